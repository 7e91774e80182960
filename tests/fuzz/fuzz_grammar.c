/* libFuzzer harness: a GBNF grammar, as quill grammar reads it, and a text for it. The
 * input is the grammar, a NUL byte, then the text (no NUL: an empty text). When the grammar
 * builds, the text is read whole (grammar_accepts) and in two pieces cut at every third
 * byte, through the byte interface the sampler uses; both must give the same verdict,
 * whatever the cut does to a UTF-8 character. A text that makes the grammar too ambiguous
 * (GRAMMAR_MAX_STACKS) is an error, the same whichever way it is read. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "grammar.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Feeds text[0..cut) and text[cut..n) in turn: whether the text is accepted. */
static bool accepted_in_two_pieces(const Grammar *g, const uint8_t *text, size_t n, size_t cut)
{
    GrammarMatcher m;
    Error err;
    if (grammar_matcher_init(&m, g, &err) != 0)
        abort();
    bool inside, allowed;
    if (grammar_matcher_allows(&m, text, cut, &allowed, &err) != 0 ||
        grammar_matcher_feed(&m, text, cut, &inside, &err) != 0 || allowed != inside)
        abort();
    if (inside && grammar_matcher_feed(&m, text + cut, n - cut, &inside, &err) != 0)
        abort();
    bool accepted = inside && grammar_matcher_is_complete(&m);
    grammar_matcher_free(&m);
    return accepted;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t grammar_len = nul ? (size_t)(nul - data) : size;
    const uint8_t *text = nul ? nul + 1 : data + size;
    size_t text_len = (size_t)(data + size - text);
    Grammar g;
    Error err;
    if (grammar_parse((const char *)data, grammar_len, &g, &err) != 0)
        return 0;
    bool whole;
    if (grammar_accepts(&g, (const char *)text, text_len, &whole, &err) != 0) {
        if (!strstr(err.msg, "too ambiguous")) /* the one error a text may give */
            abort();
        grammar_free(&g);
        return 0;
    }
    for (size_t cut = 0; cut <= text_len; cut += 3)
        if (accepted_in_two_pieces(&g, text, text_len, cut) != whole)
            abort();
    grammar_free(&g);
    return 0;
}
