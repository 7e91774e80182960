/* madvise(MADV_DONTNEED), which releases a mapping's pages, is Linux's (and BSD's), not
 * POSIX's: posix_madvise's POSIX_MADV_DONTNEED is only a hint that glibc ignores. */
#define _DEFAULT_SOURCE
#include "data.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ops.h"

#include "buffer.h"
#include "corpus.h"
#include "fileio.h"
#include "hash.h"
#include "matmul.h"

/* The cache is mapped and read in place, so its ids are in the host's byte order, which
 * the format fixes as little-endian. */
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the token cache format is little-endian; this host is not"
#endif

enum {
    CACHE_VERSION = 2,
    CACHE_HEADER_BYTES = 64,
    CACHE_HASHED_HEADER_BYTES = 40, /* the fields the header checksum covers */
    CACHE_CHUNK_TOKENS = 1 << 20,
    CACHE_MAX_CHUNK_TOKENS = 1 << 24,
};
static const char CACHE_MAGIC[4] = {'Q', 'T', 'O', 'K'};

/* A mapping larger than this has the pages a batch touched released after the batch; a
 * smaller one stays resident, which costs little and spares faulting it in again. */
static const size_t RESIDENT_MAP_MAX = (size_t)64 << 20;

/* The header's fields, in file order (see data.h). */
typedef struct {
    uint32_t version, token_bytes, vocab_size;
    uint64_t source_hash, n_tokens, chunk_tokens, header_checksum;
} CacheHeader;

/* ---- the key: what the stream was made from ----------------------------------------- */

static void hash_tokenizer(Hash64Stream *h, const Tokenizer *tok)
{
    for (int i = 0; i < tok->n_vocab; i++) {
        hash64_stream_add(h, tok->pieces[i], strlen(tok->pieces[i]) + 1);
        hash64_stream_add(h, &tok->scores[i], sizeof tok->scores[i]);
        hash64_stream_add(h, &tok->types[i], sizeof tok->types[i]);
    }
    unsigned char flags[2] = {tok->add_bos, tok->add_space_prefix};
    hash64_stream_add(h, flags, sizeof flags);
}

/* Hashes a file's bytes, then its length (which marks where one file ends and the next
 * begins), reading a block at a time. */
static int hash_file(Hash64Stream *h, const char *path, char *block, size_t block_bytes,
                     Error *err)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return error_set(err, "%s: %s", path, strerror(errno));
    uint64_t len = 0;
    size_t got;
    while ((got = fread(block, 1, block_bytes, fp)) > 0) {
        hash64_stream_add(h, block, got);
        len += got;
    }
    int failed = ferror(fp);
    fclose(fp);
    if (failed)
        return error_set(err, "%s: read error", path);
    hash64_stream_add(h, &len, sizeof len);
    return 0;
}

int data_source_key(const char *const *paths, int n_paths, const Tokenizer *tok, uint64_t *key,
                    Error *err)
{
    enum { BLOCK_BYTES = 1 << 20 };
    Hash64Stream *h = hash64_stream_new();
    char *block = malloc(BLOCK_BYTES);
    int status = h && block ? 0 : error_set(err, "out of memory");
    if (status == 0)
        hash_tokenizer(h, tok);
    for (int i = 0; i < n_paths && status == 0; i++)
        status = hash_file(h, paths[i], block, BLOCK_BYTES, err);
    if (status == 0)
        *key = hash64_stream_value(h);
    free(block);
    hash64_stream_free(h);
    return status;
}

/* ---- the cache file ------------------------------------------------------------------ */

static void put_u16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const unsigned char *p)
{
    return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

static void header_encode(const CacheHeader *h, unsigned char bytes[CACHE_HEADER_BYTES])
{
    memset(bytes, 0, CACHE_HEADER_BYTES);
    memcpy(bytes, CACHE_MAGIC, 4);
    put_u32(bytes + 4, h->version);
    put_u32(bytes + 8, h->token_bytes);
    put_u32(bytes + 12, h->vocab_size);
    put_u64(bytes + 16, h->source_hash);
    put_u64(bytes + 24, h->n_tokens);
    put_u64(bytes + 32, h->chunk_tokens);
    put_u64(bytes + 40, hash64(bytes, CACHE_HASHED_HEADER_BYTES));
}

static void header_decode(const unsigned char bytes[CACHE_HEADER_BYTES], CacheHeader *h)
{
    h->version = get_u32(bytes + 4);
    h->token_bytes = get_u32(bytes + 8);
    h->vocab_size = get_u32(bytes + 12);
    h->source_hash = get_u64(bytes + 16);
    h->n_tokens = get_u64(bytes + 24);
    h->chunk_tokens = get_u64(bytes + 32);
    h->header_checksum = get_u64(bytes + 40);
}

static uint64_t chunk_count(uint64_t n_tokens, uint64_t chunk_tokens)
{
    return (n_tokens + chunk_tokens - 1) / chunk_tokens;
}

/* The header's claims, checked against each other and the file size before any of them is
 * used. Returns 1 when the cache is simply for other data (rebuild quietly), -1 when it is
 * damaged. */
static int header_check(const CacheHeader *h, const unsigned char *bytes, uint64_t file_size,
                        uint32_t vocab_size, uint64_t source_hash, Error *err)
{
    if (memcmp(bytes, CACHE_MAGIC, 4) != 0 || h->version != CACHE_VERSION)
        return 1; /* an older format, or not a cache: rebuilt */
    if (h->header_checksum != hash64(bytes, CACHE_HASHED_HEADER_BYTES))
        return error_set(err, "the header (bytes 0..%d) does not match its checksum",
                         CACHE_HASHED_HEADER_BYTES - 1);
    if (h->vocab_size != vocab_size || h->source_hash != source_hash)
        return 1; /* made from other files or another vocabulary */
    if ((h->token_bytes != 2 && h->token_bytes != 4) || h->chunk_tokens == 0 ||
        h->chunk_tokens > CACHE_MAX_CHUNK_TOKENS || h->n_tokens == 0 ||
        h->n_tokens > (file_size - CACHE_HEADER_BYTES) / h->token_bytes)
        return error_set(err, "the header's sizes are impossible for a file of %" PRIu64 " bytes",
                         file_size);
    uint64_t expected = CACHE_HEADER_BYTES + h->n_tokens * h->token_bytes +
                        8 * chunk_count(h->n_tokens, h->chunk_tokens);
    if (expected != file_size)
        return error_set(err, "%" PRIu64 " bytes, but the header describes %" PRIu64, file_size,
                         expected);
    return 0;
}

/* True when every id of a chunk is below the vocabulary size: ids index the embedding. */
static bool chunk_ids_valid(const void *chunk, uint64_t n, uint32_t token_bytes, uint32_t vocab)
{
    for (uint64_t i = 0; i < n; i++) {
        uint32_t id = token_bytes == 2 ? ((const uint16_t *)chunk)[i] : ((const uint32_t *)chunk)[i];
        if (id >= vocab)
            return false;
    }
    return true;
}

/* ---- writing the cache as the corpus is encoded ------------------------------------- */

/* The ids are packed and written as they come, a staging block at a time; each chunk's
 * checksum is computed on the way and the table of them goes after the ids. The header,
 * which needs the token count, is written last, over a placeholder. */
enum { STAGE_TOKENS = 1 << 16 };

typedef struct {
    FILE *fp;
    CacheHeader h;
    Hash64Stream *chunk; /* the bytes of the chunk being written */
    uint64_t in_chunk;   /* its tokens so far */
    uint64_t *sums;      /* the finished chunks' checksums */
    size_t n_sums, cap_sums;
    unsigned char *stage; /* STAGE_TOKENS packed ids */
} CacheWriter;

static int writer_start(CacheWriter *w, FILE *fp, uint32_t vocab_size, uint64_t key, Error *err)
{
    memset(w, 0, sizeof *w);
    w->fp = fp;
    w->h = (CacheHeader){.version = CACHE_VERSION, .token_bytes = vocab_size <= 65536 ? 2 : 4,
                         .vocab_size = vocab_size, .source_hash = key,
                         .chunk_tokens = CACHE_CHUNK_TOKENS};
    w->chunk = hash64_stream_new();
    w->stage = malloc((size_t)STAGE_TOKENS * 4);
    if (!w->chunk || !w->stage)
        return error_set(err, "out of memory");
    unsigned char placeholder[CACHE_HEADER_BYTES] = {0};
    fwrite(placeholder, 1, sizeof placeholder, fp);
    return 0;
}

static void writer_free(CacheWriter *w)
{
    hash64_stream_free(w->chunk);
    free(w->sums);
    free(w->stage);
}

static int writer_end_chunk(CacheWriter *w, Error *err)
{
    if (buffer_reserve_items(&w->sums, &w->cap_sums, w->n_sums + 1, sizeof *w->sums, 64,
                             "chunk checksums", err) != 0)
        return -1;
    w->sums[w->n_sums++] = hash64_stream_value(w->chunk);
    hash64_stream_reset(w->chunk);
    w->in_chunk = 0;
    return 0;
}

/* Packs up to STAGE_TOKENS ids, never past the end of the current chunk, writes them and
 * adds them to the chunk's checksum. Returns how many ids it took. */
static size_t writer_put_block(CacheWriter *w, const int *ids, size_t n)
{
    uint64_t room = w->h.chunk_tokens - w->in_chunk;
    size_t m = n < STAGE_TOKENS ? n : STAGE_TOKENS;
    if (m > room)
        m = (size_t)room;
    for (size_t i = 0; i < m; i++) {
        if (w->h.token_bytes == 2)
            put_u16(w->stage + 2 * i, (uint16_t)ids[i]);
        else
            put_u32(w->stage + 4 * i, (uint32_t)ids[i]);
    }
    size_t bytes = m * w->h.token_bytes;
    fwrite(w->stage, 1, bytes, w->fp);
    hash64_stream_add(w->chunk, w->stage, bytes);
    w->in_chunk += m;
    w->h.n_tokens += m;
    return m;
}

/* The IdSink of corpus_encode. */
static int writer_append(void *ctx, const int *ids, size_t n, Error *err)
{
    CacheWriter *w = ctx;
    while (n > 0) {
        size_t m = writer_put_block(w, ids, n);
        ids += m;
        n -= m;
        if (w->in_chunk == w->h.chunk_tokens && writer_end_chunk(w, err) < 0)
            return -1;
    }
    return 0;
}

/* The checksum table, then the real header over the placeholder. */
static int writer_finish(CacheWriter *w, Error *err)
{
    if (w->h.n_tokens == 0)
        return error_set(err, "the data holds no tokens");
    if (w->in_chunk > 0 && writer_end_chunk(w, err) < 0)
        return -1;
    for (size_t c = 0; c < w->n_sums; c++) {
        unsigned char sum[8];
        put_u64(sum, w->sums[c]);
        fwrite(sum, 1, sizeof sum, w->fp);
    }
    unsigned char header[CACHE_HEADER_BYTES];
    header_encode(&w->h, header);
    if (fseek(w->fp, 0, SEEK_SET) != 0)
        return error_set(err, "cannot seek in the token cache: %s", strerror(errno));
    fwrite(header, 1, sizeof header, w->fp);
    if (fflush(w->fp) != 0 || ferror(w->fp))
        return error_set(err, "writing the token cache failed: %s", strerror(errno));
    return 0;
}

/* Encodes the files into fp as a complete cache. */
static int cache_write(FILE *fp, const char *const *paths, int n_paths, const Tokenizer *tok,
                       uint64_t key, Error *err)
{
    CacheWriter w;
    int status = writer_start(&w, fp, (uint32_t)tok->n_vocab, key, err);
    if (status == 0)
        status = corpus_encode(paths, n_paths, tok, CORPUS_SEGMENT_BYTES, compute_threads(),
                               writer_append, &w, err);
    if (status == 0)
        status = writer_finish(&w, err);
    writer_free(&w);
    return status;
}

/* Tokenizes the files into the cache at path, atomically. */
static int cache_build(const char *const *paths, int n_paths, const Tokenizer *tok,
                       uint64_t key, const char *path, Error *err)
{
    AtomicFile af;
    if (atomic_file_open(&af, path, err) != 0)
        return -1;
    if (cache_write(af.fp, paths, n_paths, tok, key, err) != 0) {
        atomic_file_abort(&af);
        return -1;
    }
    return atomic_file_commit(&af, err);
}

/* ---- reading it ---------------------------------------------------------------------- */

/* Reads exactly n bytes at offset `at`. */
static int read_at(int fd, void *buf, size_t n, uint64_t at, Error *err)
{
    size_t done = 0;
    while (done < n) {
        ssize_t got = pread(fd, (char *)buf + done, n - done, (off_t)(at + done));
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return error_set(err, "cannot read bytes %" PRIu64 "..: %s", at + done,
                             got < 0 ? strerror(errno) : "the file is shorter");
        done += (size_t)got;
    }
    return 0;
}

/* Checks every chunk against its checksum and its ids against the vocabulary, naming the
 * first bad chunk by its token range. Reads with pread, one chunk at a time. */
static int payload_check(int fd, const CacheHeader *h, Error *err)
{
    uint64_t n_chunks = chunk_count(h->n_tokens, h->chunk_tokens);
    uint64_t sums_at = CACHE_HEADER_BYTES + h->n_tokens * h->token_bytes;
    unsigned char *chunk = malloc(h->chunk_tokens * h->token_bytes);
    if (!chunk)
        return error_set(err, "out of memory for a chunk of %" PRIu64 " tokens", h->chunk_tokens);
    int status = 0;
    for (uint64_t c = 0; c < n_chunks && status == 0; c++) {
        uint64_t first = c * h->chunk_tokens;
        uint64_t n = h->n_tokens - first < h->chunk_tokens ? h->n_tokens - first : h->chunk_tokens;
        uint64_t at = CACHE_HEADER_BYTES + first * h->token_bytes;
        unsigned char sum[8];
        status = read_at(fd, chunk, n * h->token_bytes, at, err);
        if (status == 0)
            status = read_at(fd, sum, sizeof sum, sums_at + 8 * c, err);
        if (status == 0 && hash64(chunk, n * h->token_bytes) != get_u64(sum))
            status = error_set(err, "tokens %" PRIu64 "..%" PRIu64 " (bytes %" PRIu64 "..%" PRIu64
                                    ") do not match their checksum",
                               first, first + n - 1, at, at + n * h->token_bytes - 1);
        if (status == 0 && !chunk_ids_valid(chunk, n, h->token_bytes, h->vocab_size))
            status = error_set(err, "tokens %" PRIu64 "..%" PRIu64 " hold an id beyond the "
                                    "vocabulary of %" PRIu32, first, first + n - 1, h->vocab_size);
    }
    free(chunk);
    return status;
}

/* data_cache_open on an open file; name is for messages. */
static int cache_open_fd(TokenData *d, int fd, const char *name, uint32_t vocab_size,
                         uint64_t key, Error *err)
{
    struct stat st;
    unsigned char bytes[CACHE_HEADER_BYTES];
    Error short_file;
    if (fstat(fd, &st) != 0 || st.st_size < CACHE_HEADER_BYTES ||
        read_at(fd, bytes, sizeof bytes, 0, &short_file) != 0)
        return 1; /* not a cache */
    CacheHeader h;
    header_decode(bytes, &h);
    int status = header_check(&h, bytes, (uint64_t)st.st_size, vocab_size, key, err);
    if (status == 0)
        status = payload_check(fd, &h, err);
    if (status == 0)
        status = file_map_fd_readonly(fd, name, &d->map, &d->map_size, err);
    if (status != 0)
        return status;
    d->ids = (const unsigned char *)d->map + CACHE_HEADER_BYTES;
    d->token_bytes = (int)h.token_bytes;
    d->n_tokens = h.n_tokens;
    d->vocab_size = vocab_size;
    d->source_hash = key;
    d->n_train = d->n_tokens - d->n_tokens / 10;
    if (d->map_size > RESIDENT_MAP_MAX)
        madvise(d->map, d->map_size, MADV_RANDOM); /* batches read scattered windows */
    return 0;
}

int data_cache_open(TokenData *d, const char *path, uint32_t vocab_size, uint64_t key,
                    Error *err)
{
    memset(d, 0, sizeof *d);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return 1;
    int status = cache_open_fd(d, fd, path, vocab_size, key, err);
    close(fd);
    return status;
}

/* The stream into an unnamed temporary file (removed when closed), mapped. */
static int data_load_uncached(TokenData *d, const char *const *paths, int n_paths,
                              const Tokenizer *tok, uint64_t key, Error *err)
{
    FILE *fp = tmpfile();
    if (!fp)
        return error_set(err, "cannot create a temporary file for the tokens: %s",
                         strerror(errno));
    int status = cache_write(fp, paths, n_paths, tok, key, err);
    if (status == 0 &&
        cache_open_fd(d, fileno(fp), "the temporary token file", (uint32_t)tok->n_vocab, key,
                      err) != 0)
        status = -1;
    fclose(fp);
    return status;
}

int data_load(TokenData *d, const char *const *paths, int n_paths, const Tokenizer *tok,
              const char *cache_path, Error *warning, Error *err)
{
    memset(d, 0, sizeof *d);
    warning->msg[0] = '\0';
    if (n_paths == 0)
        return error_set(err, "no data files given (--data FILE...)");
    uint64_t key;
    if (corpus_check_text(paths, n_paths, err) != 0 || data_source_key(paths, n_paths, tok, &key, err) != 0)
        return -1;
    if (!cache_path)
        return data_load_uncached(d, paths, n_paths, tok, key, err);
    uint32_t vocab = (uint32_t)tok->n_vocab;
    int cached = data_cache_open(d, cache_path, vocab, key, warning);
    if (cached == 0) {
        d->from_cache = true;
        return 0;
    }
    if (cached < 0)
        error_prefix(warning, "%s: damaged, rebuilt from the text", cache_path);
    if (cache_build(paths, n_paths, tok, key, cache_path, err) != 0)
        return -1;
    if (data_cache_open(d, cache_path, vocab, key, err) != 0)
        return error_prefix(err, "%s: the cache just written does not read back", cache_path);
    return 0;
}

void data_free(TokenData *d)
{
    if (!d)
        return;
    if (d->map)
        munmap(d->map, d->map_size);
    free(d->owned_ids);
    free(d->owned_counted);
    memset(d, 0, sizeof *d);
}

void data_from_memory(TokenData *d, int *ids, uint8_t *counted, size_t n, uint32_t vocab_size)
{
    memset(d, 0, sizeof *d);
    d->ids = d->owned_ids = ids;
    d->counted = d->owned_counted = counted;
    d->token_bytes = 4;
    d->n_tokens = n;
    d->n_train = n - n / 10;
    d->vocab_size = vocab_size;
}

/* Keeps a large cache from growing this process's resident memory towards the whole file
 * over a long run. Every page a batch reads stays mapped, together with its neighbours
 * (a read fault maps the cached pages of the aligned 64 KB around it: Linux's
 * fault-around), so the batches' windows are counted, and once they may have mapped
 * RESIDENT_MAP_MAX bytes the whole mapping is let go (MADV_DONTNEED): the pages stay in
 * the page cache, so touching them again is a minor fault, not a disk read. Letting go of
 * each window right after reading it would bound memory tighter, but on this kind of VM a
 * release and the fault after it cost about 250 us a window, and releasing all the pages
 * every 1024 windows about 45 us. */
static void data_release_when_large(TokenData *d, int B, int T)
{
    if (!d->map || d->map_size <= RESIDENT_MAP_MAX)
        return;
    const size_t fault_around = 64 << 10;
    d->mapped_bytes += (size_t)B * ((size_t)(T + 1) * d->token_bytes + 2 * fault_around);
    if (d->mapped_bytes >= RESIDENT_MAP_MAX) {
        madvise(d->map, d->map_size, MADV_DONTNEED);
        d->mapped_bytes = 0;
    }
}

size_t data_split(const TokenData *d, DataSplit split, size_t *n)
{
    switch (split) {
    case SPLIT_TRAIN:
        *n = d->n_train;
        return 0;
    case SPLIT_VAL:
        *n = d->n_tokens - d->n_train;
        return d->n_train;
    case SPLIT_ALL:
        break;
    }
    *n = d->n_tokens;
    return 0;
}

size_t data_window_count(const TokenData *d, DataSplit split, int T)
{
    size_t n;
    data_split(d, split, &n);
    return n > (size_t)T ? (n - 1) / (size_t)T : 0;
}

void data_window_starts(const TokenData *d, DataSplit split, int B, int T, Rng *rng,
                        uint64_t first_window, size_t *starts)
{
    size_t n;
    data_split(d, split, &n);
    size_t windows = data_window_count(d, split, T);
    for (int b = 0; b < B; b++)
        starts[b] = rng ? (size_t)rng_below(rng, n - (size_t)T)
                        : (size_t)((first_window + (uint64_t)b) % windows) * (size_t)T;
}

void data_batch_at(TokenData *d, DataSplit split, int B, int T, const size_t *starts,
                   int *inputs, int *targets)
{
    size_t n;
    size_t first = data_split(d, split, &n);
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            inputs[(size_t)b * T + t] = data_token(d, first + starts[b] + t);
            size_t next = first + starts[b] + t + 1;
            bool counted = !d->counted || d->counted[next];
            targets[(size_t)b * T + t] = counted ? data_token(d, next) : LOSS_IGNORED;
        }
    }
    data_release_when_large(d, B, T);
}

void data_batch(TokenData *d, DataSplit split, int B, int T, Rng *rng,
                uint64_t first_window, int *inputs, int *targets)
{
    size_t starts[1024];
    for (int b0 = 0; b0 < B; b0 += 1024) {
        int n = B - b0 < 1024 ? B - b0 : 1024;
        data_window_starts(d, split, n, T, rng, first_window + (uint64_t)b0, starts);
        data_batch_at(d, split, n, T, starts, inputs + (size_t)b0 * T, targets + (size_t)b0 * T);
    }
}
