/* Notebook 3: byte-pair encoding, merge by merge.
 *
 * A BPE vocabulary starts from single characters and repeatedly adds the most frequent
 * adjacent pair as a new piece. SentencePiece writes spaces as "▁" (U+2581) and starts
 * each word with one, so "low lower" is "▁low▁lower" and merges never cross a word start.
 * Each learned piece gets a score (-rank), and the encoder replays the merges by score:
 * that is all a vocabulary needs for encoding to reproduce training.
 *
 * This notebook trains a tiny vocabulary on a classic example and prints the merges in
 * the order learned, then encodes a word the corpus never contained.
 *
 * Build and run:  make && build/release/notebooks/03_bpe */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

static void print_encoding(const Tokenizer *t, const char *text)
{
    int *ids;
    size_t n;
    Error err;
    if (tokenizer_encode(t, text, strlen(text), false, &ids, &n, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return;
    }
    printf("\"%s\" ->", text);
    for (size_t i = 0; i < n; i++)
        printf(" [%s]", t->pieces[ids[i]]);
    printf("\n");
    free(ids);
}

int main(void)
{
    const char *corpus = "low low low low low lower lower newest newest newest newest "
                         "newest newest widest widest widest";
    Tokenizer t = {0};
    Error err;
    /* 3 specials + 256 byte tokens + the corpus's 11 characters (with "▁"), then 8 merges */
    if (tokenizer_train_bpe(&t, corpus, strlen(corpus), 259 + 11 + 8, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    printf("corpus: %s\n\nmerges, in the order learned (score = -rank):\n", corpus);
    for (int id = 259; id < t.n_vocab; id++) {
        const char *piece = t.pieces[id];
        bool single_character = tokenizer_utf8_len((unsigned char)piece[0]) == strlen(piece);
        if (!single_character)
            printf("  %s  (score %g)\n", piece, t.scores[id]);
    }
    printf("\n");
    print_encoding(&t, "newest lowest");
    print_encoding(&t, "slow");
    printf("\n\"lowest\" was never seen, yet it splits into known pieces; a character the\n"
           "vocabulary lacks would become byte tokens <0x..>, so nothing is ever lost.\n");
    tokenizer_free(&t);
    return 0;
}
