#include "corpus.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"

/* ---- Reading segments ---------------------------------------------------------------- */

enum { READ_STEP = 1 << 16 }; /* the least a read asks for */

void corpus_open(CorpusReader *r, const char *const *paths, int n_paths, size_t segment_bytes)
{
    memset(r, 0, sizeof *r);
    r->paths = paths;
    r->n_paths = n_paths;
    r->segment_bytes = segment_bytes;
    r->file = -1;
}

void corpus_segment_free(CorpusSegment *s)
{
    free(s->text);
    memset(s, 0, sizeof *s);
}

void corpus_close(CorpusReader *r)
{
    if (r->fp)
        fclose(r->fp);
    corpus_segment_free(&r->carry);
    r->fp = NULL;
}

static int segment_reserve(CorpusSegment *s, size_t need, Error *err)
{
    return buffer_reserve(&s->text, &s->cap, need, READ_STEP, "corpus segment", err);
}

static int segment_append(CorpusSegment *s, const char *bytes, size_t n, Error *err)
{
    if (n == 0)
        return 0;
    if (segment_reserve(s, s->len + n, err) < 0)
        return -1;
    memcpy(s->text + s->len, bytes, n);
    s->len += n;
    return 0;
}

/* The last offset in [from, len) that is a space, past offset 0: where a word starts and
 * the segment can end. 0 when there is none. */
static size_t last_space(const char *text, size_t from, size_t len)
{
    for (size_t i = len; i > from && i > 1; i--)
        if (text[i - 1] == ' ')
            return i - 1;
    return 0;
}

/* Opens the next file that has a segment to give. Returns 1, 0 after the last, -1. */
static int reader_open_next(CorpusReader *r, Error *err)
{
    if (r->file + 1 >= r->n_paths) {
        r->file = r->n_paths;
        return 0;
    }
    r->file++;
    r->fp = fopen(r->paths[r->file], "rb");
    if (!r->fp)
        return error_set(err, "%s: %s", r->paths[r->file], strerror(errno));
    r->file_started = false;
    r->carry.len = 0;
    return 1;
}

/* Reads into seg until it may end: at the end of the file, or past segment_bytes at a
 * space (a word longer than a segment makes the segment longer). */
static int reader_fill(CorpusReader *r, CorpusSegment *seg, Error *err)
{
    size_t searched = seg->len;
    for (;;) {
        size_t target = seg->len + READ_STEP;
        if (r->segment_bytes != SIZE_MAX && target < r->segment_bytes)
            target = r->segment_bytes;
        if (segment_reserve(seg, target, err) < 0)
            return -1;
        size_t want = seg->cap - seg->len;
        size_t got = fread(seg->text + seg->len, 1, want, r->fp);
        seg->len += got;
        if (got < want) {
            if (ferror(r->fp))
                return error_set(err, "%s: read error", r->paths[r->file]);
            fclose(r->fp);
            r->fp = NULL;
            return 0;
        }
        if (r->segment_bytes == SIZE_MAX || seg->len < r->segment_bytes)
            continue;
        size_t cut = last_space(seg->text, searched, seg->len);
        searched = seg->len;
        if (cut > 0) {
            r->carry.len = 0;
            if (segment_append(&r->carry, seg->text + cut, seg->len - cut, err) < 0)
                return -1;
            seg->len = cut;
            return 0;
        }
    }
}

int corpus_next(CorpusReader *r, CorpusSegment *seg, Error *err)
{
    for (;;) {
        while (!r->fp && r->carry.len == 0) {
            int opened = reader_open_next(r, err);
            if (opened <= 0)
                return opened;
        }
        seg->len = 0;
        seg->file = r->file;
        seg->file_start = !r->file_started;
        if (segment_append(seg, r->carry.text, r->carry.len, err) < 0)
            return -1;
        r->carry.len = 0;
        if (r->fp && reader_fill(r, seg, err) < 0)
            return -1;
        /* a file that ended right at a cut leaves nothing more to hand out */
        if (seg->len > 0 || seg->file_start) {
            r->file_started = true;
            return 1;
        }
    }
}

/* ---- Is it text? -------------------------------------------------------------------- */

/* The first len bytes of a file (at_end: the whole file) against corpus_check_text's rule.
 * Bad bytes are counted one by one: after a lead byte whose character is invalid, the next
 * byte is judged afresh, as Latin-1's "\xe9t\xe9" has two bad bytes, not one. */
static int block_check_text(const char *path, const unsigned char *s, size_t len, bool at_end,
                            Error *err)
{
    size_t invalid = 0, first_invalid = 0;
    for (size_t off = 0; off < len;) {
        if (s[off] == 0)
            return error_set(err, "%s is not text: a NUL byte at offset %zu (quill trains on "
                                  "UTF-8 text files)",
                             path, off);
        size_t n = utf8_len(s[off]);
        if (n > len - off) {
            if (!at_end) /* the block's end cut a character: it is not judged */
                break;
            n = len - off;
        }
        if (utf8_code(s + off, n) < 0) {
            first_invalid = invalid++ == 0 ? off : first_invalid;
            n = 1;
        }
        off += n;
    }
    if (invalid * 100 > len * CORPUS_MAX_INVALID_PER_100)
        return error_set(err, "%s is not UTF-8 text: %zu of its first %zu bytes are not part of "
                              "a valid UTF-8 character, the first at offset %zu (quill trains on "
                              "UTF-8 text; iconv converts other encodings)",
                         path, invalid, len, first_invalid);
    return 0;
}

int corpus_check_text(const char *const *paths, int n_paths, Error *err)
{
    unsigned char *block = malloc(CORPUS_SNIFF_BYTES);
    if (!block)
        return error_set(err, "out of memory");
    int status = 0;
    for (int i = 0; status == 0 && i < n_paths; i++) {
        FILE *fp = fopen(paths[i], "rb");
        if (!fp) {
            status = error_set(err, "%s: %s", paths[i], strerror(errno));
            break;
        }
        errno = 0;
        size_t len = fread(block, 1, CORPUS_SNIFF_BYTES, fp);
        if (ferror(fp))
            status = error_set(err, "%s: %s", paths[i], errno ? strerror(errno) : "read error");
        else
            status = block_check_text(paths[i], block, len, feof(fp), err);
        fclose(fp);
    }
    free(block);
    return status;
}

/* ---- Passes over segments, one thread per segment ------------------------------------ */

/* Up to n segments, in corpus order. Returns how many were read, or -1. */
static int read_batch(CorpusReader *r, CorpusSegment *segs, int n, Error *err)
{
    int k = 0;
    while (k < n) {
        int got = corpus_next(r, &segs[k], err);
        if (got < 0)
            return -1;
        if (got == 0)
            break;
        k++;
    }
    return k;
}

/* The first failure of a batch, with the file it came from. */
static int batch_status(const int *status, const Error *errs, const CorpusSegment *segs, int k,
                        const char *const *paths, Error *err)
{
    for (int i = 0; i < k; i++) {
        if (status[i] != 0) {
            *err = errs[i];
            return error_prefix(err, "%s", paths[segs[i].file]);
        }
    }
    return 0;
}

/* What every pass holds per thread. */
typedef struct {
    int threads;
    CorpusSegment *segs;
    int *status;
    Error *errs;
} Batch;

static int batch_alloc(Batch *b, int threads, Error *err)
{
    b->threads = threads < 1 ? 1 : threads;
    b->segs = calloc((size_t)b->threads, sizeof *b->segs);
    b->status = calloc((size_t)b->threads, sizeof *b->status);
    b->errs = calloc((size_t)b->threads, sizeof *b->errs);
    if (!b->segs || !b->status || !b->errs)
        return error_set(err, "out of memory");
    return 0;
}

static void batch_free(Batch *b)
{
    for (int i = 0; b->segs && i < b->threads; i++)
        corpus_segment_free(&b->segs[i]);
    free(b->segs);
    free(b->status);
    free(b->errs);
}

int corpus_count_words(const char *const *paths, int n_paths, TextCountsKind kind,
                       size_t segment_bytes, int threads, TextCounts **counts, Error *err)
{
    *counts = NULL;
    Batch b = {0};
    int rc = batch_alloc(&b, threads, err);
    TextCounts **per_thread = rc == 0 ? calloc((size_t)b.threads, sizeof *per_thread) : NULL;
    if (rc == 0 && !per_thread)
        rc = error_set(err, "out of memory");
    for (int i = 0; rc == 0 && i < b.threads; i++)
        rc = text_counts_new(&per_thread[i], kind, err);
    CorpusReader r;
    corpus_open(&r, paths, n_paths, segment_bytes);
    int k = 0;
    while (rc == 0 && (k = read_batch(&r, b.segs, b.threads, err)) > 0) {
#pragma omp parallel for num_threads(k) schedule(static, 1)
        for (int i = 0; i < k; i++)
            b.status[i] = text_counts_add(per_thread[i], b.segs[i].text, b.segs[i].len,
                                          b.segs[i].file_start, &b.errs[i]);
        rc = batch_status(b.status, b.errs, b.segs, k, paths, err);
    }
    if (rc == 0 && k < 0)
        rc = -1;
    corpus_close(&r);
    for (int i = 1; rc == 0 && i < b.threads; i++)
        rc = text_counts_merge(per_thread[0], per_thread[i], err);
    if (rc == 0) {
        *counts = per_thread[0];
        per_thread[0] = NULL;
    }
    for (int i = 0; per_thread && i < b.threads; i++)
        text_counts_free(per_thread[i]);
    free(per_thread);
    batch_free(&b);
    return rc;
}

/* The ids of one segment: bos when it starts its file, then its text, word by word when
 * an encoder is given, else whole. */
static int segment_encode(const Tokenizer *tok, WordEncoder *enc, const CorpusSegment *seg,
                          IdList *out, Error *err)
{
    out->n = 0;
    if (seg->file_start) {
        if (tok->bos_id < 0)
            return error_set(err, "cannot start the file with bos: the vocabulary has none");
        if (idlist_push(out, tok->bos_id, err) < 0)
            return -1;
    }
    if (enc)
        return word_encoder_encode(enc, seg->text, seg->len, seg->file_start, out, err);
    int *ids;
    size_t n;
    if (tokenizer_encode(tok, seg->text, seg->len, false, &ids, &n, err) < 0)
        return -1;
    int rc = idlist_append(out, ids, n, err);
    free(ids);
    return rc;
}

int corpus_encode(const char *const *paths, int n_paths, const Tokenizer *tok,
                  size_t segment_bytes, int threads, IdSink sink, void *ctx, Error *err)
{
    bool by_word = tokenizer_encodes_by_word(tok);
    Batch b = {0};
    int rc = batch_alloc(&b, threads, err);
    WordEncoder **encoders = rc == 0 ? calloc((size_t)b.threads, sizeof *encoders) : NULL;
    IdList *outs = rc == 0 ? calloc((size_t)b.threads, sizeof *outs) : NULL;
    if (rc == 0 && (!encoders || !outs))
        rc = error_set(err, "out of memory");
    for (int i = 0; rc == 0 && by_word && i < b.threads; i++)
        rc = word_encoder_new(&encoders[i], tok, err);
    CorpusReader r;
    corpus_open(&r, paths, n_paths, by_word ? segment_bytes : SIZE_MAX);
    int k = 0;
    while (rc == 0 && (k = read_batch(&r, b.segs, b.threads, err)) > 0) {
#pragma omp parallel for num_threads(k) schedule(static, 1)
        for (int i = 0; i < k; i++)
            b.status[i] = segment_encode(tok, encoders[i], &b.segs[i], &outs[i], &b.errs[i]);
        rc = batch_status(b.status, b.errs, b.segs, k, paths, err);
        for (int i = 0; rc == 0 && i < k; i++)
            rc = sink(ctx, outs[i].ids, outs[i].n, err);
    }
    if (rc == 0 && k < 0)
        rc = -1;
    corpus_close(&r);
    for (int i = 0; encoders && i < b.threads; i++)
        word_encoder_free(encoders[i]);
    for (int i = 0; outs && i < b.threads; i++)
        free(outs[i].ids);
    free(encoders);
    free(outs);
    batch_free(&b);
    return rc;
}
