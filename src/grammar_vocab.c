/* The vocabulary's bytes and their trie, and the two ways of asking a grammar which tokens
 * can come next (grammar_vocab.h). */
#include "grammar_vocab.h"

#include <stdlib.h>
#include <string.h>

#include "buffer.h"

void grammar_vocab_free(GrammarVocab *v)
{
    free(v->bytes);
    free(v->start);
    free(v->never);
    free(v->nodes);
    free(v->node_of);
    free(v->node_ok);
    *v = (GrammarVocab){0};
}

/* Every token's bytes in one buffer: a first pass for the offsets, a second for the bytes. A
 * control token (other than end-of-text) has no text to match, and an empty token adds
 * nothing (it could repeat forever): both are never allowed. */
static int read_tokens(GrammarVocab *v, const Tokenizer *tok, Error *err)
{
    int n = v->n_vocab;
    v->start = malloc(((size_t)n + 1) * sizeof *v->start);
    v->never = calloc((size_t)n + 1, sizeof *v->never);
    if (!v->start || !v->never)
        return error_set(err, "out of memory for the grammar stage's %d tokens", n);
    v->start[0] = 0;
    for (int t = 0; t < n; t++)
        v->start[t + 1] = v->start[t] + tokenizer_token_bytes(tok, t, NULL, 0);
    v->bytes = malloc(v->start[n] + 1);
    if (!v->bytes)
        return error_set(err, "out of memory for the grammar stage's %d tokens", n);
    for (int t = 0; t < n; t++) {
        size_t len = v->start[t + 1] - v->start[t];
        tokenizer_token_bytes(tok, t, (char *)v->bytes + v->start[t], len);
        bool control = tok->types && tok->types[t] == TOKEN_TYPE_CONTROL;
        v->never[t] = t != v->eos_id && (control || len == 0);
    }
    return 0;
}

/* The child of `node` reached by `byte`, added when there is none yet; -1 when memory runs
 * out. Children are a linked list: the root has a few hundred, deeper nodes a handful. */
static int trie_child(GrammarVocab *v, size_t *cap, int node, unsigned char byte, Error *err)
{
    for (int c = v->nodes[node].first_child; c >= 0; c = v->nodes[c].next_sibling)
        if (v->nodes[c].byte == byte)
            return c;
    if (buffer_reserve_items(&v->nodes, cap, (size_t)v->n_nodes + 1, sizeof *v->nodes, 1024,
                             "the token trie", err) != 0)
        return -1;
    int c = v->n_nodes++;
    v->nodes[c] = (TrieNode){.first_child = -1, .next_sibling = v->nodes[node].first_child,
                             .byte = byte};
    v->nodes[node].first_child = c;
    return c;
}

static int build_trie(GrammarVocab *v, Error *err)
{
    size_t cap = 0;
    v->node_of = malloc((size_t)v->n_vocab * sizeof *v->node_of);
    if (!v->node_of || buffer_reserve_items(&v->nodes, &cap, 1, sizeof *v->nodes, 1024,
                                            "the token trie", err) != 0)
        return v->node_of ? -1 : error_set(err, "out of memory for the token trie");
    v->nodes[0] = (TrieNode){.first_child = -1, .next_sibling = -1};
    v->n_nodes = 1;
    for (int t = 0; t < v->n_vocab; t++) {
        int node = 0;
        for (size_t i = v->start[t]; i < v->start[t + 1] && node >= 0; i++)
            node = trie_child(v, &cap, node, v->bytes[i], err);
        if (node < 0)
            return -1;
        v->node_of[t] = node;
    }
    v->node_ok = malloc((size_t)v->n_nodes * sizeof *v->node_ok);
    return v->node_ok ? 0 : error_set(err, "out of memory for the token trie");
}

int grammar_vocab_init(GrammarVocab *v, const Tokenizer *tok, Error *err)
{
    *v = (GrammarVocab){.n_vocab = tok->n_vocab, .eos_id = tok->eos_id};
    if (tok->eos_id < 0)
        return error_set(err, "a grammar needs a vocabulary with an end-of-text token");
    if (read_tokens(v, tok, err) != 0 || build_trie(v, err) != 0) {
        grammar_vocab_free(v);
        return -1;
    }
    return 0;
}

bool grammar_vocab_allows(const GrammarVocab *v, const GrammarMatcher *m, int t, bool complete)
{
    if (t == v->eos_id)
        return complete;
    if (v->never[t])
        return false;
    bool allowed = false;
    Error err;
    if (grammar_matcher_allows(m, v->bytes + v->start[t], v->start[t + 1] - v->start[t],
                               &allowed, &err) != 0)
        return false; /* out of memory: a token that cannot be checked is refused */
    return allowed;
}

void grammar_vocab_mask_plain(const GrammarVocab *v, const GrammarMatcher *m, bool *allowed)
{
    bool complete = grammar_matcher_is_complete(m);
    for (int t = 0; t < v->n_vocab; t++)
        allowed[t] = grammar_vocab_allows(v, m, t, complete);
}

/* Marks node_ok for every node under `node` (m: the state after node's prefix) whose prefix
 * keeps the text inside the grammar. Depth-first: the recursion is as deep as the longest
 * token, and each level holds one state. */
static void trie_walk(GrammarVocab *v, int node, const GrammarMatcher *m)
{
    for (int c = v->nodes[node].first_child; c >= 0; c = v->nodes[c].next_sibling) {
        GrammarMatcher next;
        bool allowed = false;
        Error err;
        if (grammar_matcher_advance(m, &v->nodes[c].byte, 1, &next, &allowed, &err) == 0 &&
            allowed) {
            v->node_ok[c] = true;
            trie_walk(v, c, &next);
        }
        grammar_matcher_free(&next);
    }
}

void grammar_vocab_mask_trie(GrammarVocab *v, const GrammarMatcher *m, bool *allowed)
{
    memset(v->node_ok, 0, (size_t)v->n_nodes * sizeof *v->node_ok);
    trie_walk(v, 0, m);
    bool complete = grammar_matcher_is_complete(m);
    for (int t = 0; t < v->n_vocab; t++)
        allowed[t] = t == v->eos_id ? complete : !v->never[t] && v->node_ok[v->node_of[t]];
}
