/* Shared by the libFuzzer harnesses and the program that writes their seed corpora: the
 * small text and tokenizer the train_state and token-cache seeds are made from (a cache is
 * only read deeply when it was made from the same text and vocabulary). */
#ifndef QUILL_FUZZ_COMMON_H
#define QUILL_FUZZ_COMMON_H

#include <stdio.h>
#include <stdlib.h>

#include "tokenizer.h"

static const char FUZZ_TEXT[] =
    "The cat sat on the mat. The dog ran to see the cat, and the cat was very glad.\n"
    "A mat, a cat, a dog: who sat where? Nobody knows - ask the cat.\n";

/* Writes FUZZ_TEXT to dir/text.txt and trains the char tokenizer on it; the path is
 * written into path. Returns 0 on success. */
static inline int fuzz_text_and_tokenizer(const char *dir, char *path, size_t cap, Tokenizer *tok)
{
    Error err;
    snprintf(path, cap, "%s/text.txt", dir);
    FILE *fp = fopen(path, "wb");
    if (!fp || fwrite(FUZZ_TEXT, 1, sizeof FUZZ_TEXT - 1, fp) != sizeof FUZZ_TEXT - 1) {
        if (fp)
            fclose(fp);
        return -1;
    }
    fclose(fp);
    *tok = (Tokenizer){0};
    return tokenizer_train_char(tok, FUZZ_TEXT, sizeof FUZZ_TEXT - 1, &err);
}

#endif
