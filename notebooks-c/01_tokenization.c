/* Notebook 1: tokenization, merge by merge.
 *
 * A language model reads integers, not text. A tokenizer turns text into a sequence of
 * ids from a fixed vocabulary, and back. Byte-pair encoding (BPE; Sennrich et al. 2016,
 * after Gage 1994) builds the vocabulary from data:
 *
 *   1. start with every character of the corpus as a piece;
 *   2. count every adjacent pair of pieces in the corpus;
 *   3. add the most frequent pair as a new piece ("t" + "h" -> "th") and merge it
 *      everywhere; repeat from 2 until the vocabulary is as large as wanted.
 *
 * Frequent words end up as single tokens, rare words as a few pieces, and every text
 * still has an encoding. quill's trainer is SentencePiece-style (src/tokenizer.h): a space
 * is written "▁" (U+2581) and starts the word after it, so "the cat" is "▁the▁cat" and a
 * merge never crosses a word start. Each learned piece gets score -rank, and the encoder
 * replays the merges in that order: that is all a vocabulary needs to reproduce training.
 *
 * Build and run:  make notebooks   (or: build/release/notebooks/01_tokenization) */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

/* The corpus: one paragraph. "café" is its only non-ASCII word. */
static const char PARAGRAPH[] =
    "the cat sat on the mat. the cat saw the dog. the dog sat on the log. "
    "then the cat and the dog went to the café, and the cat sat there.";

/* <unk>, <s>, </s> and the 256 byte tokens <0x00>..<0xFF> come first in every quill
 * vocabulary (ids 0..258); characters and merged pieces follow. */
enum { N_FIXED = 259, MERGES_SHOWN = 12 };

static void die(const Error *err)
{
    fprintf(stderr, "%s\n", err->msg);
    exit(1);
}

static int *encode(const Tokenizer *t, const char *text, size_t *n)
{
    int *ids;
    Error err;
    if (tokenizer_encode(t, text, strlen(text), false, &ids, n, &err) != 0)
        die(&err);
    return ids;
}

static void print_pieces(const Tokenizer *t, const char *text)
{
    size_t n;
    int *ids = encode(t, text, &n);
    printf("  \"%s\" -> %zu tokens:", text, n);
    for (size_t i = 0; i < n; i++)
        printf(" [%s]", t->pieces[ids[i]]);
    printf("\n");
    free(ids);
}

static void train(Tokenizer *t, int vocab_size)
{
    Error err;
    if (tokenizer_train_bpe(t, PARAGRAPH, strlen(PARAGRAPH), vocab_size, &err) != 0)
        die(&err);
}

/* Characters (not bytes) in a UTF-8 string: "▁t" is 2, though 4 bytes. */
static int utf8_chars(const char *s)
{
    int n = 0;
    for (size_t i = 0; s[i]; i += utf8_len((unsigned char)s[i]))
        n++;
    return n;
}

/* How many single characters the trainer found: the pieces after the fixed ones that are
 * one UTF-8 character long. */
static int count_characters(const Tokenizer *t)
{
    int n = 0;
    for (int id = N_FIXED; id < t->n_vocab; id++)
        n += utf8_len((unsigned char)t->pieces[id][0]) == strlen(t->pieces[id]);
    return n;
}

int main(void)
{
    Tokenizer t = {0};
    Error err;
    printf("corpus (%zu bytes):\n  %s\n\n", strlen(PARAGRAPH), PARAGRAPH);

    /* Step 1. Characters only: a vocabulary with no room for merges. */
    train(&t, N_FIXED + 1000);
    int n_chars = count_characters(&t);
    train(&t, N_FIXED + n_chars);
    size_t n_tokens;
    free(encode(&t, PARAGRAPH, &n_tokens));
    printf("1. %d distinct characters (with \"▁\" for the space): the paragraph is %zu tokens\n\n",
           n_chars, n_tokens);

    /* Step 2. Allow one more merge each time, and watch the paragraph shrink. Training is
     * deterministic, so vocabulary k+1 is vocabulary k plus one piece: the new merge. */
    printf("2. merges, in the order they are learned:\n");
    for (int k = 1; k <= MERGES_SHOWN; k++) {
        train(&t, N_FIXED + n_chars + k);
        free(encode(&t, PARAGRAPH, &n_tokens));
        const char *piece = t.pieces[t.n_vocab - 1];
        printf("  merge %2d: %s%*s the paragraph is now %3zu tokens\n", k, piece,
               10 - utf8_chars(piece), "", n_tokens);
    }
    printf("\n");
    print_pieces(&t, "the cat sat on the mat.");
    print_pieces(&t, "the cattle");
    printf("  (\"cattle\" was never seen, yet it splits into pieces the vocabulary knows)\n\n");

    /* Step 3. Encoding then decoding gives the text back, byte for byte. */
    int *ids = encode(&t, PARAGRAPH, &n_tokens);
    char *decoded;
    size_t decoded_len;
    if (tokenizer_decode(&t, ids, n_tokens, &decoded, &decoded_len, &err) != 0)
        die(&err);
    bool same = decoded_len == strlen(PARAGRAPH) && memcmp(decoded, PARAGRAPH, decoded_len) == 0;
    printf("3. decode(encode(paragraph)) == paragraph: %s\n\n", same ? "yes" : "NO");
    free(decoded);
    free(ids);

    /* Step 4. Byte fallback. A vocabulary has room for only so many characters; this one
     * keeps the most frequent n_chars - 1, so the rarest, "é" (it occurs once), is left
     * out. Without a fallback it would become <unk>, and decoding could not give it back.
     * Instead the encoder spells it with byte tokens: its UTF-8 bytes C3 A9. */
    train(&t, N_FIXED + n_chars - 1);
    printf("4. a vocabulary without \"é\": byte fallback\n");
    print_pieces(&t, "café");
    print_pieces(&t, "naïve 🙂");
    ids = encode(&t, "café", &n_tokens);
    if (tokenizer_decode(&t, ids, n_tokens, &decoded, &decoded_len, &err) != 0)
        die(&err);
    printf("  decoded again: \"%s\"\n", decoded);
    free(decoded);
    free(ids);

    printf("\nTry this: add \"the café\" a few more times to PARAGRAPH. \"é\" then counts\n"
           "among the frequent characters, step 4 keeps it as a piece of its own, and \"café\"\n"
           "needs no byte tokens.\n");
    tokenizer_free(&t);
    return 0;
}
