/* A corpus of text files, read in segments so that no step holds it whole, and the two
 * passes that need all of it: counting its words (to train a tokenizer) and encoding it
 * (to fill the token cache).
 *
 * A segment is a stretch of one file, at most about `segment_bytes` long, that ends where
 * a word starts (before a space; see "Text in words" in tokenizer.h): every word lies in
 * one segment, so counting or encoding segment by segment gives what the whole file would.
 * Each pass reads as many segments as it has threads, works on them side by side (one
 * word table or word cache per thread), then reads the next ones; the results are taken
 * in file order, so they do not depend on the thread count or the segment size. */
#ifndef QUILL_TRAIN_CORPUS_H
#define QUILL_TRAIN_CORPUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "error.h"
#include "tokenizer.h"

typedef struct {
    char *text; /* owned, reused from segment to segment */
    size_t len, cap;
    int file;        /* index of its file */
    bool file_start; /* the segment starts its file (an empty file is one empty segment) */
} CorpusSegment;

typedef struct {
    const char *const *paths;
    int n_paths;
    size_t segment_bytes; /* SIZE_MAX: one segment per file */
    int file;             /* the file being read; n_paths once all are read */
    FILE *fp;             /* open while a file has more to give */
    bool file_started;    /* a segment of the current file was handed out */
    CorpusSegment carry;  /* bytes read beyond the last cut, the next segment's start */
} CorpusReader;

void corpus_open(CorpusReader *r, const char *const *paths, int n_paths, size_t segment_bytes);
/* The next segment into *seg. Returns 1, 0 when the corpus is done, -1 on a read error. */
int corpus_next(CorpusReader *r, CorpusSegment *seg, Error *err);
void corpus_close(CorpusReader *r);
void corpus_segment_free(CorpusSegment *s);

/* Refuses files that are not text, before any pass reads them whole: a file whose first
 * CORPUS_SNIFF_BYTES hold a NUL byte (an executable, an image, UTF-16), or in which more
 * than 1 byte in CORPUS_MAX_INVALID_PER_100 = 100 is not part of a valid UTF-8 character (a
 * compressed file, or text in a legacy encoding such as Latin-1). A stray bad byte or two in
 * a text is fine: it trains as byte tokens. The message names the file, what was found and
 * where. Empty files pass (the tokenizer trainer says what is wrong with no text at all). */
enum { CORPUS_SNIFF_BYTES = 64 << 10, CORPUS_MAX_INVALID_PER_100 = 1 };
int corpus_check_text(const char *const *paths, int n_paths, Error *err);

/* The segment size the passes use: a few MB, large enough that threads rarely wait. */
enum { CORPUS_SEGMENT_BYTES = 8 << 20 };

/* Counts the words of every file, each a text of its own, on `threads` threads. */
int corpus_count_words(const char *const *paths, int n_paths, TextCountsKind kind,
                       size_t segment_bytes, int threads, TextCounts **counts, Error *err);

/* Receives the ids of the corpus, in order, a segment's worth at a time. */
typedef int (*IdSink)(void *ctx, const int *ids, size_t n, Error *err);

/* Encodes every file, each starting with bos, and hands the ids to sink in file order.
 * Word by word with a word cache per thread when the tokenizer allows it; otherwise each
 * file is encoded whole, one file per thread. */
int corpus_encode(const char *const *paths, int n_paths, const Tokenizer *tok,
                  size_t segment_bytes, int threads, IdSink sink, void *ctx, Error *err);

#endif
