/* Corpora larger than memory: the word rule, the word-by-word encoder, counting words in
 * pieces, and the segment reader, each compared with encoding or training on the whole
 * text at once (the reference every streamed result must equal). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../train/corpus.h"
#include "../train/data.h"
#include "fileio.h"
#include "test_util.h"
#include "tokenizer.h"

/* ---- helpers ---- */

static char *read_text(const char *path, size_t *len)
{
    char *text;
    Error err;
    cr_assert_eq(file_read_all(path, &text, len, &err), 0, "%s", err.msg);
    return text;
}

static void write_text(const char *path, const char *text, size_t len)
{
    FILE *fp = fopen(path, "wb");
    cr_assert_not_null(fp);
    cr_assert_eq(fwrite(text, 1, len, fp), len);
    fclose(fp);
}

/* Two tokenizers are the same vocabulary: pieces, scores and types, in order. */
static void expect_same_vocab(const Tokenizer *a, const Tokenizer *b)
{
    cr_assert_eq(a->n_vocab, b->n_vocab);
    int same = 0;
    for (int i = 0; i < a->n_vocab; i++) {
        cr_expect_str_eq(a->pieces[i], b->pieces[i], "piece %d", i);
        cr_expect_eq(a->scores[i], b->scores[i], "score of piece %d", i);
        cr_expect_eq(a->types[i], b->types[i], "type of piece %d", i);
        same += strcmp(a->pieces[i], b->pieces[i]) == 0;
    }
    cr_assert_eq(same, a->n_vocab);
}

/* A text that exercises the word rule: double spaces, a leading space on a line, a "▁"
 * already in the text, accents, an emoji, newlines inside words. */
static const char MIXED[] =
    "The cat  sat on the mat.\n  Indented line\twith a tab;\n"
    "caf\xc3\xa9 na\xc3\xafve \xf0\x9f\x98\x80 emoji \xe2\x96\x81marked word\n"
    "the cat sat again, the cat sat again, the cat.\n";

/* ---- the word rule ---- */

Test(words, end_where_the_next_space_or_space_mark_starts)
{
    const char text[] = "The cat  sat\xe2\x96\x81x";
    size_t len = sizeof text - 1;
    const char *expected[] = {"The", " cat", " ", " sat", "\xe2\x96\x81x"};
    size_t start = 0;
    int n = 0;
    while (start < len) {
        size_t end = tokenizer_word_end(text, len, start);
        cr_assert_lt(n, 5);
        cr_expect_eq(end - start, strlen(expected[n]), "word %d", n);
        cr_expect_eq(memcmp(text + start, expected[n], end - start), 0, "word %d", n);
        start = end;
        n++;
    }
    cr_assert_eq(n, 5);
}

/* With the space prefix the first word gets a space in front; a text that starts with a
 * space gets a word of its own for the prefix (escaped: "▁▁a" is "▁" then "▁a"). */
Test(words, the_cursor_puts_the_space_prefix_in_front)
{
    const struct {
        const char *text;
        bool prefix;
        const char *words; /* the words joined by '|' */
    } cases[] = {
        {"ab cd", true, " ab| cd"},
        {"ab cd", false, "ab| cd"},
        {" ab", true, " | ab"},
        {"", true, ""},
    };
    int compared = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        WordCursor c = {0};
        word_cursor_start(&c, cases[i].text, strlen(cases[i].text), cases[i].prefix);
        char joined[64] = "";
        const char *word;
        size_t n;
        Error err;
        while (word_cursor_next(&c, &word, &n, &err) > 0) {
            if (joined[0])
                strcat(joined, "|");
            strncat(joined, word, n);
        }
        word_cursor_free(&c);
        cr_expect_str_eq(joined, cases[i].words, "case %zu", i);
        compared++;
    }
    cr_assert_eq(compared, 4);
}

/* ---- encoding word by word ---- */

/* Encodes text word by word (text_start set) and compares with tokenizer_encode. */
static void expect_word_encoding_equals_whole(const Tokenizer *tok, const char *text, size_t len)
{
    Error err;
    int *whole;
    size_t n_whole;
    cr_assert_eq(tokenizer_encode(tok, text, len, false, &whole, &n_whole, &err), 0, "%s",
                 err.msg);
    WordEncoder *enc;
    cr_assert_eq(word_encoder_new(&enc, tok, &err), 0, "%s", err.msg);
    IdList out = {0};
    cr_assert_eq(word_encoder_encode(enc, text, len, true, &out, &err), 0, "%s", err.msg);
    cr_assert_eq(out.n, n_whole, "%zu ids word by word, %zu whole", out.n, n_whole);
    size_t same = 0;
    for (size_t i = 0; i < n_whole; i++)
        same += out.ids[i] == whole[i];
    cr_expect_eq(same, n_whole, "%zu of %zu ids agree", same, n_whole);
    free(out.ids);
    free(whole);
    word_encoder_free(enc);
}

Test(words, encoding_word_by_word_equals_encoding_whole_texts)
{
    SHARED_FILE_OR_SKIP(path, "data/tinyshakespeare.txt");
    size_t len;
    char *text = read_text(path, &len);
    Tokenizer bpe = {0}, chars = {0};
    Error err;
    cr_assert_eq(tokenizer_train_bpe(&bpe, text, len, 2048, &err), 0, "%s", err.msg);
    cr_assert_eq(tokenizer_train_char(&chars, MIXED, sizeof MIXED - 1, &err), 0, "%s", err.msg);
    cr_assert(tokenizer_encodes_by_word(&bpe));
    cr_assert(tokenizer_encodes_by_word(&chars));
    expect_word_encoding_equals_whole(&bpe, text, len);
    expect_word_encoding_equals_whole(&bpe, MIXED, sizeof MIXED - 1); /* unseen characters */
    expect_word_encoding_equals_whole(&bpe, "  two spaces first", 18);
    expect_word_encoding_equals_whole(&chars, MIXED, sizeof MIXED - 1);
    tokenizer_free(&bpe);
    tokenizer_free(&chars);
    free(text);
}

/* Llama 2's vocabulary holds "▁▁" (and longer runs, for indented code): merges cross word
 * starts there, so it must be encoded whole. */
Test(words, a_vocabulary_with_pieces_across_word_starts_is_encoded_whole)
{
    SHARED_FILE_OR_SKIP(path, "vocab/ggml-vocab-llama-spm.gguf");
    GgufFile *f;
    Tokenizer tok = {0};
    Error err;
    cr_assert_eq(gguf_open(&f, path, &err), 0, "%s", err.msg);
    cr_assert_eq(tokenizer_from_gguf(&tok, f, &err), 0, "%s", err.msg);
    cr_assert_geq(tokenizer_lookup(&tok, "\xe2\x96\x81\xe2\x96\x81", 6), 0,
                  "the premise: Llama 2 has the piece \"▁▁\"");
    cr_expect_not(tokenizer_encodes_by_word(&tok));
    WordEncoder *enc;
    cr_expect_eq(word_encoder_new(&enc, &tok, &err), -1);
    cr_expect_not_null(strstr(err.msg, "span the start of a word"), "%s", err.msg);
    tokenizer_free(&tok);
    gguf_close(f);
}

/* ---- counting words in pieces ---- */

/* Counts text cut into pieces of about `piece` bytes (each ending before a space), spread
 * over `tables` tables that are merged at the end, as the threads of corpus_count_words do. */
static TextCounts *counts_in_pieces(TextCountsKind kind, const char *text, size_t len,
                                    size_t piece, int tables)
{
    TextCounts *c[4];
    Error err;
    cr_assert_leq(tables, 4);
    for (int i = 0; i < tables; i++)
        cr_assert_eq(text_counts_new(&c[i], kind, &err), 0, "%s", err.msg);
    size_t start = 0;
    for (int k = 0; start < len; k++) {
        size_t end = start + piece < len ? start + piece : len;
        while (end < len && text[end] != ' ')
            end++;
        cr_assert_eq(text_counts_add(c[k % tables], text + start, end - start, start == 0, &err),
                     0, "%s", err.msg);
        start = end;
    }
    for (int i = 1; i < tables; i++) {
        cr_assert_eq(text_counts_merge(c[0], c[i], &err), 0, "%s", err.msg);
        text_counts_free(c[i]);
    }
    return c[0];
}

Test(counts, the_vocabulary_does_not_depend_on_how_the_text_was_cut)
{
    SHARED_FILE_OR_SKIP(path, "data/tinyshakespeare.txt");
    size_t len;
    char *text = read_text(path, &len);
    Tokenizer whole = {0}, whole_chars = {0};
    Error err;
    cr_assert_eq(tokenizer_train_bpe(&whole, text, len, 1024, &err), 0, "%s", err.msg);
    cr_assert_eq(tokenizer_train_char(&whole_chars, text, len, &err), 0, "%s", err.msg);
    const struct {
        size_t piece;
        int tables;
    } cuts[] = {{1000, 1}, {4096, 3}, {100000, 2}};
    int compared = 0;
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        TextCounts *c = counts_in_pieces(TEXT_COUNTS_BPE, text, len, cuts[i].piece, cuts[i].tables);
        cr_expect_eq(text_counts_bytes(c), len);
        Tokenizer cut = {0};
        cr_assert_eq(tokenizer_train_bpe_counts(&cut, c, 1024, &err), 0, "%s", err.msg);
        expect_same_vocab(&whole, &cut);
        tokenizer_free(&cut);
        text_counts_free(c);
        c = counts_in_pieces(TEXT_COUNTS_CHAR, text, len, cuts[i].piece, cuts[i].tables);
        cr_assert_eq(tokenizer_train_char_counts(&cut, c, &err), 0, "%s", err.msg);
        expect_same_vocab(&whole_chars, &cut);
        tokenizer_free(&cut);
        text_counts_free(c);
        compared++;
    }
    cr_assert_eq(compared, 3);
    tokenizer_free(&whole);
    tokenizer_free(&whole_chars);
    free(text);
}

/* The counts are what a hand count of the words gives. */
Test(counts, words_are_counted_with_the_space_prefix_of_each_text)
{
    TextCounts *c;
    Error err;
    cr_assert_eq(text_counts_new(&c, TEXT_COUNTS_BPE, &err), 0, "%s", err.msg);
    cr_assert_eq(text_counts_add(c, "a b a", 5, true, &err), 0, "%s", err.msg);
    cr_assert_eq(text_counts_add(c, "b", 1, true, &err), 0, "%s", err.msg);
    /* " a" twice, " b" twice: the second text's "b" got the prefix too */
    cr_expect_eq(text_counts_distinct_words(c), 2);
    cr_expect_eq(text_counts_bytes(c), 6);
    text_counts_free(c);
}

Test(counts, counts_for_the_other_trainer_are_refused)
{
    TextCounts *c;
    Tokenizer t = {0};
    Error err;
    cr_assert_eq(text_counts_new(&c, TEXT_COUNTS_CHAR, &err), 0, "%s", err.msg);
    cr_assert_eq(text_counts_add(c, "abc", 3, true, &err), 0, "%s", err.msg);
    cr_expect_eq(tokenizer_train_bpe_counts(&t, c, 300, &err), -1);
    cr_expect_not_null(strstr(err.msg, "space prefix"), "%s", err.msg);
    text_counts_free(c);
}

/* ---- the corpus reader and the two passes ---- */

/* Three files: ordinary text, an empty file, and one that starts with a space, has a word
 * far longer than a segment and bytes that are not UTF-8 away from spaces. */
static int write_corpus_files(const char *dir, char paths[3][512])
{
    static char long_word[3000];
    memset(long_word, 'x', sizeof long_word - 1);
    for (int i = 0; i < 3; i++)
        snprintf(paths[i], 512, "%s/part%d.txt", dir, i);
    write_text(paths[0], MIXED, sizeof MIXED - 1);
    write_text(paths[1], "", 0);
    char third[4096];
    int n = snprintf(third, sizeof third, " lead space %s tail \xff\xfe" "bytes end", long_word);
    write_text(paths[2], third, (size_t)n);
    return 3;
}

/* The reference: each file encoded whole, bos first, concatenated. */
static IdList reference_ids(const char *const *paths, int n_paths, const Tokenizer *tok)
{
    IdList all = {0};
    Error err;
    for (int i = 0; i < n_paths; i++) {
        size_t len;
        char *text = read_text(paths[i], &len);
        int *ids;
        size_t n;
        cr_assert_eq(tokenizer_encode(tok, text, len, true, &ids, &n, &err), 0, "%s", err.msg);
        cr_assert_eq(idlist_append(&all, ids, n, &err), 0);
        free(ids);
        free(text);
    }
    return all;
}

static int collect_ids(void *ctx, const int *ids, size_t n, Error *err)
{
    return idlist_append(ctx, ids, n, err);
}

Test(corpus, segments_and_threads_give_the_ids_of_whole_files)
{
    const char *dir = test_make_tmpdir();
    char names[3][512];
    int n_paths = write_corpus_files(dir, names);
    const char *paths[3] = {names[0], names[1], names[2]};
    Tokenizer tok = {0};
    Error err;
    cr_assert_eq(tokenizer_train_bpe(&tok, MIXED, sizeof MIXED - 1, 300, &err), 0, "%s", err.msg);
    IdList expected = reference_ids(paths, n_paths, &tok);
    const struct {
        size_t segment;
        int threads;
    } runs[] = {{16, 1}, {16, 2}, {100, 2}, {CORPUS_SEGMENT_BYTES, 2}};
    int compared = 0;
    for (size_t r = 0; r < sizeof runs / sizeof *runs; r++) {
        IdList got = {0};
        cr_assert_eq(corpus_encode(paths, n_paths, &tok, runs[r].segment, runs[r].threads,
                                   collect_ids, &got, &err),
                     0, "%s", err.msg);
        cr_assert_eq(got.n, expected.n, "run %zu: %zu ids, %zu expected", r, got.n, expected.n);
        cr_expect_arr_eq(got.ids, expected.ids, got.n * sizeof *got.ids, "run %zu", r);
        free(got.ids);
        compared++;
    }
    cr_assert_eq(compared, 4);
    free(expected.ids);
    tokenizer_free(&tok);
}

/* Counting the same files in small segments on two threads trains the vocabulary that
 * counting each whole file does. */
Test(corpus, counting_in_segments_trains_the_same_vocabulary)
{
    const char *dir = test_make_tmpdir();
    char names[3][512];
    int n_paths = write_corpus_files(dir, names);
    const char *paths[3] = {names[0], names[1], names[2]};
    Error err;
    TextCounts *whole, *segmented;
    cr_assert_eq(text_counts_new(&whole, TEXT_COUNTS_BPE, &err), 0);
    for (int i = 0; i < n_paths; i++) {
        size_t len;
        char *text = read_text(paths[i], &len);
        cr_assert_eq(text_counts_add(whole, text, len, true, &err), 0, "%s", err.msg);
        free(text);
    }
    cr_assert_eq(corpus_count_words(paths, n_paths, TEXT_COUNTS_BPE, 16, 2, &segmented, &err), 0,
                 "%s", err.msg);
    cr_expect_eq(text_counts_distinct_words(segmented), text_counts_distinct_words(whole));
    cr_expect_eq(text_counts_bytes(segmented), text_counts_bytes(whole));
    Tokenizer a = {0}, b = {0};
    cr_assert_eq(tokenizer_train_bpe_counts(&a, whole, 400, &err), 0, "%s", err.msg);
    cr_assert_eq(tokenizer_train_bpe_counts(&b, segmented, 400, &err), 0, "%s", err.msg);
    expect_same_vocab(&a, &b);
    tokenizer_free(&a);
    tokenizer_free(&b);
    text_counts_free(whole);
    text_counts_free(segmented);
}

Test(corpus, a_missing_file_is_named)
{
    const char *paths[] = {"/nonexistent/quill-corpus.txt"};
    TextCounts *c;
    Error err;
    cr_expect_eq(corpus_count_words(paths, 1, TEXT_COUNTS_CHAR, 16, 2, &c, &err), -1);
    cr_expect_not_null(strstr(err.msg, "/nonexistent/quill-corpus.txt"), "%s", err.msg);
}

/* The token cache data_load writes (on two threads, through the streaming writer) holds
 * the reference ids, and reads back from the cache the second time. */
Test(corpus, the_token_cache_holds_the_ids_of_whole_files)
{
    const char *dir = test_make_tmpdir();
    char names[3][512];
    int n_paths = write_corpus_files(dir, names);
    const char *paths[3] = {names[0], names[1], names[2]};
    Tokenizer tok = {0};
    Error err, warning;
    cr_assert_eq(tokenizer_train_bpe(&tok, MIXED, sizeof MIXED - 1, 300, &err), 0, "%s", err.msg);
    IdList expected = reference_ids(paths, n_paths, &tok);
    char cache[600];
    snprintf(cache, sizeof cache, "%s/tokens.bin", dir);
    int compared = 0;
    for (int pass = 0; pass < 2; pass++) {
        TokenData d;
        cr_assert_eq(data_load(&d, paths, n_paths, &tok, cache, &warning, &err), 0, "%s",
                     err.msg);
        cr_expect_eq(d.from_cache, pass == 1);
        cr_assert_eq(d.n_tokens, expected.n);
        size_t same = 0;
        for (size_t i = 0; i < d.n_tokens; i++)
            same += data_token(&d, i) == expected.ids[i];
        cr_expect_eq(same, expected.n);
        data_free(&d);
        compared++;
    }
    cr_assert_eq(compared, 2);
    free(expected.ids);
    tokenizer_free(&tok);
}
