#include "data.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "fileio.h"
#include "hash.h"

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

/* Reads every file, hashing it into the key and, when `texts` is not NULL, keeping it. */
static int sources_read(const char *const *paths, int n_paths, const Tokenizer *tok,
                        char **texts, size_t *lens, uint64_t *key, Error *err)
{
    Hash64Stream *h = hash64_stream_new();
    if (!h)
        return error_set(err, "out of memory");
    hash_tokenizer(h, tok);
    int status = 0;
    for (int i = 0; i < n_paths && status == 0; i++) {
        char *text;
        size_t len;
        status = file_read_all(paths[i], &text, &len, err);
        if (status != 0)
            break;
        hash64_stream_add(h, &len, sizeof len);
        hash64_stream_add(h, text, len);
        if (texts) {
            texts[i] = text;
            lens[i] = len;
        } else {
            free(text);
        }
    }
    *key = hash64_stream_value(h);
    hash64_stream_free(h);
    return status;
}

/* ---- tokenizing ---------------------------------------------------------------------- */

/* The ids as the cache stores them: 2 bytes each when every id fits. */
static int ids_pack(TokenData *d, const int *ids, size_t n, Error *err)
{
    d->token_bytes = d->vocab_size <= 65536 ? 2 : 4;
    d->owned = malloc(n ? n * (size_t)d->token_bytes : 1);
    if (!d->owned)
        return error_set(err, "out of memory for %zu tokens", n);
    for (size_t i = 0; i < n; i++) {
        if (d->token_bytes == 2)
            ((uint16_t *)d->owned)[i] = (uint16_t)ids[i];
        else
            ((uint32_t *)d->owned)[i] = (uint32_t)ids[i];
    }
    d->ids = d->owned;
    d->n_tokens = n;
    return 0;
}

/* Tokenizes the files, each starting with <s>, into one packed stream. */
static int data_tokenize(TokenData *d, char **texts, const size_t *lens, const char *const *paths,
                         int n_paths, const Tokenizer *tok, Error *err)
{
    int *all = NULL;
    size_t n_all = 0;
    int status = 0;
    for (int i = 0; i < n_paths && status == 0; i++) {
        int *ids;
        size_t n;
        if (tokenizer_encode(tok, texts[i], lens[i], true, &ids, &n, err) != 0) {
            status = error_prefix(err, "%s", paths[i]);
            break;
        }
        int *grown = realloc(all, (n_all + n) * sizeof *all + 1);
        if (!grown) {
            free(ids);
            status = error_set(err, "%s: out of memory for %zu tokens", paths[i], n_all + n);
            break;
        }
        all = grown;
        memcpy(all + n_all, ids, n * sizeof *ids);
        n_all += n;
        free(ids);
    }
    if (status == 0)
        status = ids_pack(d, all, n_all, err);
    free(all);
    return status;
}

/* ---- the cache file ------------------------------------------------------------------ */

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

int data_cache_save(const TokenData *d, const char *path, Error *err)
{
    CacheHeader h = {.version = CACHE_VERSION, .token_bytes = (uint32_t)d->token_bytes,
                     .vocab_size = d->vocab_size, .source_hash = d->source_hash,
                     .n_tokens = d->n_tokens, .chunk_tokens = CACHE_CHUNK_TOKENS};
    unsigned char header[CACHE_HEADER_BYTES];
    header_encode(&h, header);
    AtomicFile af;
    if (atomic_file_open(&af, path, err) != 0)
        return -1;
    fwrite(header, 1, sizeof header, af.fp);
    fwrite(d->ids, (size_t)d->token_bytes, d->n_tokens, af.fp);
    for (uint64_t c = 0; c < chunk_count(h.n_tokens, h.chunk_tokens); c++) {
        uint64_t first = c * h.chunk_tokens;
        uint64_t n = h.n_tokens - first < h.chunk_tokens ? h.n_tokens - first : h.chunk_tokens;
        unsigned char sum[8];
        put_u64(sum, hash64((const char *)d->ids + first * h.token_bytes, n * h.token_bytes));
        fwrite(sum, 1, sizeof sum, af.fp);
    }
    return atomic_file_commit(&af, err);
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

/* Checks every chunk of the mapped payload against its checksum and its ids against the
 * vocabulary, naming the first bad chunk by its token range. */
static int payload_check(const unsigned char *map, const CacheHeader *h, Error *err)
{
    const unsigned char *payload = map + CACHE_HEADER_BYTES;
    const unsigned char *sums = payload + h->n_tokens * h->token_bytes;
    for (uint64_t c = 0; c < chunk_count(h->n_tokens, h->chunk_tokens); c++) {
        uint64_t first = c * h->chunk_tokens;
        uint64_t n = h->n_tokens - first < h->chunk_tokens ? h->n_tokens - first : h->chunk_tokens;
        const unsigned char *chunk = payload + first * h->token_bytes;
        if (hash64(chunk, n * h->token_bytes) != get_u64(sums + 8 * c))
            return error_set(err, "tokens %" PRIu64 "..%" PRIu64 " (bytes %" PRIu64 "..%" PRIu64
                                  ") do not match their checksum",
                             first, first + n - 1, CACHE_HEADER_BYTES + first * h->token_bytes,
                             CACHE_HEADER_BYTES + (first + n) * h->token_bytes - 1);
        if (!chunk_ids_valid(chunk, n, h->token_bytes, h->vocab_size))
            return error_set(err, "tokens %" PRIu64 "..%" PRIu64 " hold an id beyond the "
                                  "vocabulary of %" PRIu32, first, first + n - 1, h->vocab_size);
    }
    return 0;
}

/* Maps the cache at path when it is valid for this data. Returns 0 when mapped, 1 when
 * there is no usable cache (missing, or made from other data), -1 when it is damaged (err
 * says where). */
static int cache_open(TokenData *d, const char *path, Error *err)
{
    void *map;
    size_t size;
    if (file_map_readonly(path, &map, &size, NULL) != 0)
        return 1;
    CacheHeader h;
    int status = size < CACHE_HEADER_BYTES ? 1 : 0;
    if (status == 0) {
        header_decode(map, &h);
        status = header_check(&h, map, size, d->vocab_size, d->source_hash, err);
    }
    if (status == 0)
        status = payload_check(map, &h, err);
    if (status != 0) {
        munmap(map, size);
        return status;
    }
    d->map = map;
    d->map_size = size;
    d->ids = (const unsigned char *)map + CACHE_HEADER_BYTES;
    d->token_bytes = (int)h.token_bytes;
    d->n_tokens = h.n_tokens;
    d->from_cache = true;
    return 0;
}

int data_load(TokenData *d, const char *const *paths, int n_paths, const Tokenizer *tok,
              const char *cache_path, Error *warning, Error *err)
{
    memset(d, 0, sizeof *d);
    warning->msg[0] = '\0';
    if (n_paths == 0)
        return error_set(err, "no data files given (--data FILE...)");
    d->vocab_size = (uint32_t)tok->n_vocab;
    char **texts = calloc((size_t)n_paths, sizeof *texts);
    size_t *lens = calloc((size_t)n_paths, sizeof *lens);
    int status = texts && lens ? 0 : error_set(err, "out of memory");
    /* the key needs the files' bytes anyway; they are kept for tokenizing */
    if (status == 0)
        status = sources_read(paths, n_paths, tok, texts, lens, &d->source_hash, err);
    int cached = status == 0 && cache_path ? cache_open(d, cache_path, warning) : 1;
    if (cached < 0)
        error_prefix(warning, "%s: damaged, rebuilt from the text", cache_path);
    if (status == 0 && cached != 0)
        status = data_tokenize(d, texts, lens, paths, n_paths, tok, err);
    for (int i = 0; texts && i < n_paths; i++)
        free(texts[i]);
    free(texts);
    free(lens);
    if (status != 0) {
        data_free(d);
        return -1;
    }
    d->n_train = d->n_tokens - d->n_tokens / 10;
    return 0;
}

void data_free(TokenData *d)
{
    if (!d)
        return;
    free(d->owned);
    if (d->map)
        munmap(d->map, d->map_size);
    memset(d, 0, sizeof *d);
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

void data_batch_at(const TokenData *d, DataSplit split, int B, int T, const size_t *starts,
                   int *inputs, int *targets)
{
    size_t n;
    size_t first = data_split(d, split, &n);
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            inputs[(size_t)b * T + t] = data_token(d, first + starts[b] + t);
            targets[(size_t)b * T + t] = data_token(d, first + starts[b] + t + 1);
        }
    }
}

void data_batch(const TokenData *d, DataSplit split, int B, int T, Rng *rng,
                uint64_t first_window, int *inputs, int *targets)
{
    size_t starts[1024];
    for (int b0 = 0; b0 < B; b0 += 1024) {
        int n = B - b0 < 1024 ? B - b0 : 1024;
        data_window_starts(d, split, n, T, rng, first_window + (uint64_t)b0, starts);
        data_batch_at(d, split, n, T, starts, inputs + (size_t)b0 * T, targets + (size_t)b0 * T);
    }
}
