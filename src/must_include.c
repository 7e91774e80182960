#include "must_include.h"

#include <stdlib.h>
#include <string.h>

void must_include_free(MustInclude *m)
{
    for (int i = 0; m->words && i < m->n; i++) {
        free(m->words[i].text);
        sampler_bad_words_free(m->words[i].spellings, m->words[i].n_spellings);
    }
    free(m->words);
    *m = (MustInclude){0};
}

static int must_word_init(MustWord *w, const Tokenizer *tok, const char *word, Error *err)
{
    w->len = strlen(word);
    if (w->len == 0)
        return error_set(err, "a word that must appear is empty");
    if (w->len > MUST_INCLUDE_MAX_BYTES)
        return error_set(err, "a word that must appear has %zu bytes; at most %d", w->len,
                         MUST_INCLUDE_MAX_BYTES);
    w->text = strdup(word);
    if (!w->text)
        return error_set(err, "out of memory");
    if (sampler_bad_word_add(&w->spellings, &w->n_spellings, tok, word, w->len, err) != 0)
        return -1;
    for (int i = 0; i < w->n_spellings; i++)
        w->longest = w->spellings[i].n_tokens > w->longest ? w->spellings[i].n_tokens : w->longest;
    return 0;
}

int must_include_init(MustInclude *m, const Tokenizer *tok, const char *const *words, int n,
                      Error *err)
{
    *m = (MustInclude){0};
    if (n < 0 || n > MUST_INCLUDE_MAX_WORDS || (n > 0 && !words))
        return error_set(err, "%d words that must appear: 0 to %d", n, MUST_INCLUDE_MAX_WORDS);
    if (n == 0)
        return 0;
    m->words = calloc((size_t)n, sizeof *m->words);
    if (!m->words)
        return error_set(err, "out of memory");
    for (int i = 0; i < n; i++) {
        if (!words[i])
            return error_set(err, "word %d that must appear is NULL", i);
        m->n = i + 1; /* must_include_free frees what it holds */
        if (must_word_init(&m->words[i], tok, words[i], err) != 0)
            return -1;
        m->n_spellings += m->words[i].n_spellings;
        m->max_progress += m->words[i].longest;
    }
    m->all = n == 64 ? UINT64_MAX : (UINT64_C(1) << n) - 1;
    return 0;
}

static bool bytes_contain(const char *text, size_t len, const char *word, size_t n)
{
    for (size_t i = 0; i + n <= len; i++)
        if (memcmp(text + i, word, n) == 0)
            return true;
    return false;
}

uint64_t must_include_found(const MustInclude *m, const char *text, size_t len)
{
    uint64_t found = 0;
    for (int i = 0; i < m->n; i++)
        if (bytes_contain(text ? text : "", len, m->words[i].text, m->words[i].len))
            found |= UINT64_C(1) << i;
    return found;
}

/* Token i of tokens[0..n) followed by `next` (-1: nothing follows). */
static int token_at(const int *tokens, int n, int next, int i)
{
    return i == n ? next : tokens[i];
}

/* The progress on spelling s of tokens[0..n) (and `next`, unless it is -1): the largest
 * k < s->n_tokens such that the last k tokens are the spelling's first k. */
static int spelling_progress(const TokenSequence *s, const int *tokens, int n, int next)
{
    int total = n + (next >= 0);
    for (int k = s->n_tokens - 1 < total ? s->n_tokens - 1 : total; k > 0; k--) {
        bool match = true;
        for (int j = 0; j < k && match; j++)
            match = token_at(tokens, n, next, total - k + j) == s->tokens[j];
        if (match)
            return k;
    }
    return 0;
}

/* The last bytes of tokens[0..n) then token's: at least `need` bytes before token's (when
 * the tokens have them), written backwards from the end of buf[0..cap). Returns where they
 * start. cap must hold need + two pieces of 256 bytes. */
static size_t tail_bytes(const Tokenizer *tok, const int *tokens, int n, int token, size_t need,
                         char *buf, size_t cap)
{
    char piece[256];
    size_t start = cap, before = 0;
    for (int i = n; i >= 0 && (i == n || before < need); i--) {
        size_t len = tokenizer_token_bytes(tok, i == n ? token : tokens[i], piece, sizeof piece);
        len = len < sizeof piece ? len : sizeof piece;
        start -= len;
        memcpy(buf + start, piece, len);
        before += i == n ? 0 : len;
    }
    return start;
}

int must_include_progress(const MustInclude *m, const Tokenizer *tok, const int *tokens, int n,
                          int token, uint64_t *met)
{
    char buf[MUST_INCLUDE_MAX_BYTES + 2 * 256];
    size_t start = tail_bytes(tok, tokens, n, token, MUST_INCLUDE_MAX_BYTES - 1, buf, sizeof buf);
    int progress = 0;
    for (int i = 0; i < m->n; i++) {
        const MustWord *w = &m->words[i];
        uint64_t bit = UINT64_C(1) << i;
        if (!(*met & bit) && bytes_contain(buf + start, sizeof buf - start, w->text, w->len))
            *met |= bit;
        int best = *met & bit ? w->longest : 0;
        for (int s = 0; s < w->n_spellings && !(*met & bit); s++) {
            int k = spelling_progress(&w->spellings[s], tokens, n, token);
            best = k > best ? k : best;
        }
        progress += best;
    }
    return progress;
}

int must_include_next_tokens(const MustInclude *m, uint64_t met, const int *tokens, int n,
                             int *out)
{
    int count = 0;
    for (int i = 0; i < m->n; i++) {
        for (int s = 0; !(met & UINT64_C(1) << i) && s < m->words[i].n_spellings; s++) {
            const TokenSequence *sp = &m->words[i].spellings[s];
            int next = sp->tokens[spelling_progress(sp, tokens, n, -1)], known = 0;
            while (known < count && out[known] != next)
                known++;
            if (known == count)
                out[count++] = next;
        }
    }
    return count;
}
