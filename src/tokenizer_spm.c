/* The SentencePiece BPE encoder (tokenizer.ggml.model = "llama"): steps 1 to 4 of
 * tokenizer.h's overview on one stretch of text between special tokens, run the way
 * llama.cpp's llm_tokenizer_spm_session (src/llama-vocab.cpp) runs them. docs/formats.md
 * walks through the algorithm with an example. */
#include "tokenizer_internal.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "heap.h"

/* ---- Encoding, step 1: text to symbols ---- */

int tokenizer_escape(const char *text, size_t len, bool add_space_prefix, char **out,
                     size_t *out_len, Error *err)
{
    *out = NULL;
    *out_len = 0;
    if (len > (SIZE_MAX - 2 * SPACE_MARK_LEN) / SPACE_MARK_LEN)
        return error_set(err, "text of %zu bytes is too long to encode", len);
    /* Worst case: every byte a space, each growing to the 3 bytes of "▁". */
    char *buf = malloc((len + 1) * SPACE_MARK_LEN + 1);
    if (!buf)
        return error_set(err, "out of memory escaping %zu bytes of text", len);
    size_t n = 0;
    if (add_space_prefix) {
        memcpy(buf, SPACE_MARK, SPACE_MARK_LEN);
        n = SPACE_MARK_LEN;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(buf + n, SPACE_MARK, SPACE_MARK_LEN);
            n += SPACE_MARK_LEN;
        } else {
            buf[n++] = text[i];
        }
    }
    buf[n] = '\0';
    *out = buf;
    *out_len = n;
    return 0;
}

/* ---- Encoding, step 3: the merge loop ---- */

/* One symbol of the text being encoded: the bytes text[off, off + n). It starts as one
 * character and grows each time its right neighbour is merged into it. The live symbols
 * form a doubly linked list through prev/next (-1 at the ends); a symbol that was merged
 * into its left neighbour keeps n = 0. */
typedef struct {
    size_t off, n;
    int prev, next;
} Symbol;

/* A candidate merge of two neighbouring symbols whose concatenation is a piece. `size` is
 * left.n + right.n when the bigram was queued: if either symbol has been merged with
 * something else since, the sum no longer matches and the bigram is stale. Stale bigrams
 * stay in the queue and are skipped when they come out, which is cheaper than finding and
 * removing them. */
typedef struct {
    int left, right;
    float score;
    size_t size;
} Bigram;

/* The state of one SPM run over one escaped text fragment. */
typedef struct {
    const Tokenizer *t;
    const char *text;
    Symbol *symbols;
    int n_symbols;
    Heap queue; /* of Bigram: the first out merges first (bigram_before) */
} SpmRun;

/* True when a merges before b: the higher score first and, on a tie, the pair further to
 * the left (llama.cpp's llm_bigram_spm::comparator, read the other way round). */
static bool bigram_before(const void *x, const void *y, const void *unused)
{
    const Bigram *a = x, *b = y;
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

/* Queues the merge of symbols left and right when their concatenation is a piece. */
static int spm_try_bigram(SpmRun *r, int left, int right, Error *err)
{
    if (left < 0 || right < 0)
        return 0;
    const Symbol *l = &r->symbols[left], *rt = &r->symbols[right];
    size_t size = l->n + rt->n; /* the two are adjacent in the text, so one run of bytes */
    int id = tokenizer_lookup(r->t, r->text + l->off, size);
    if (id < 0)
        return 0;
    Bigram b = {left, right, r->t->scores[id], size};
    return heap_push(&r->queue, &b, "queued merges", err);
}

/* Cuts the text into characters (step 2): the lead byte alone decides the length, so
 * invalid UTF-8 still gets cut, and a cut that runs past the end is clipped. */
static int spm_split(SpmRun *r, size_t len, Error *err)
{
    r->symbols = malloc(len * sizeof *r->symbols);
    if (!r->symbols)
        return error_set(err, "out of memory for %zu symbols", len);
    size_t off = 0;
    int i = 0;
    while (off < len) {
        size_t n = utf8_len((unsigned char)r->text[off]);
        if (n > len - off)
            n = len - off;
        r->symbols[i] = (Symbol){off, n, i - 1, off + n == len ? -1 : i + 1};
        off += n;
        i++;
    }
    r->n_symbols = i;
    return 0;
}

/* Step 3: merge the best queued pair until none is left. Every merge makes a new symbol
 * whose pairs with its new neighbours may be pieces too, so those are queued in turn. */
static int spm_merge(SpmRun *r, Error *err)
{
    for (int i = 1; i < r->n_symbols; i++)
        if (spm_try_bigram(r, i - 1, i, err) < 0)
            return -1;
    while (r->queue.n > 0) {
        Bigram b;
        heap_pop(&r->queue, &b);
        Symbol *left = &r->symbols[b.left], *right = &r->symbols[b.right];
        if (left->n == 0 || right->n == 0 || left->n + right->n != b.size)
            continue; /* stale: one side was merged into something else already */
        left->n += right->n;
        right->n = 0;
        left->next = right->next;
        if (right->next >= 0)
            r->symbols[right->next].prev = b.left;
        if (spm_try_bigram(r, left->prev, b.left, err) < 0 ||
            spm_try_bigram(r, b.left, left->next, err) < 0)
            return -1;
    }
    return 0;
}

/* ---- Encoding, step 4: symbols to ids ---- */

/* The token for one byte of a symbol that is not a piece. llama.cpp tries "<0xAB>", then a
 * piece made of that single byte, and throws when neither exists; quill falls back to
 * <unk> there, and fails only when there is no <unk> either. */
static int tokenizer_byte_fallback(const Tokenizer *t, unsigned char byte, Error *err)
{
    if (t->byte_token[byte] >= 0)
        return t->byte_token[byte];
    int id = tokenizer_lookup(t, (const char *)&byte, 1);
    if (id >= 0)
        return id;
    if (t->unk_id >= 0)
        return t->unk_id;
    return error_set(err, "byte 0x%02X cannot be encoded: the vocabulary has no <0x%02X>, "
                          "no one-byte piece for it and no <unk>",
                     byte, byte);
}

/* Every symbol left after merging is a piece or falls back to byte tokens. llama.cpp also
 * keeps a map from each merged text to the two symbols it came from ("rev_merge"), to split
 * a final symbol that is not a piece back into its halves. That branch can never run: a
 * pair is merged only when its concatenation is a piece, so every merged symbol is one.
 * Only single characters can miss, and those go to bytes. */
static int spm_emit(const SpmRun *r, IdList *out, Error *err)
{
    for (int i = 0; i != -1; i = r->symbols[i].next) {
        const Symbol *s = &r->symbols[i];
        int id = tokenizer_lookup(r->t, r->text + s->off, s->n);
        if (id >= 0) {
            if (idlist_push(out, id, err) < 0)
                return -1;
            continue;
        }
        for (size_t k = 0; k < s->n; k++) {
            id = tokenizer_byte_fallback(r->t, (unsigned char)r->text[s->off + k], err);
            if (id < 0 || idlist_push(out, id, err) < 0)
                return -1;
        }
    }
    return 0;
}

int spm_encode_fragment(const Tokenizer *t, const char *text, size_t len, bool space_prefix,
                        IdList *out, Error *err)
{
    char *escaped;
    size_t n;
    if (tokenizer_escape(text, len, space_prefix, &escaped, &n, err) < 0)
        return -1;
    if (n > INT_MAX) {
        free(escaped);
        return error_set(err, "text of %zu bytes is too long to encode in one piece", len);
    }
    SpmRun run = {.t = t, .text = escaped};
    heap_init(&run.queue, sizeof(Bigram), 64, bigram_before, NULL);
    int rc = spm_split(&run, n, err);
    if (rc == 0)
        rc = spm_merge(&run, err);
    if (rc == 0)
        rc = spm_emit(&run, out, err);
    free(run.symbols);
    heap_free(&run.queue);
    free(escaped);
    return rc;
}

