#include "data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fileio.h"

enum { TOKEN_CACHE_VERSION = 1, TOKEN_CACHE_HEADER = 32 };
static const char TOKEN_CACHE_MAGIC[4] = {'Q', 'T', 'O', 'K'};

/* Hash of a tokenizer's vocabulary and flags, part of the cache key. */
static uint64_t tokenizer_hash(const Tokenizer *tok)
{
    uint64_t h = FNV1A64_INIT;
    for (int i = 0; i < tok->n_vocab; i++) {
        h = fnv1a64(h, tok->pieces[i], strlen(tok->pieces[i]) + 1);
        h = fnv1a64(h, &tok->scores[i], sizeof tok->scores[i]);
        h = fnv1a64(h, &tok->types[i], sizeof tok->types[i]);
    }
    unsigned char flags[2] = {tok->add_bos, tok->add_space_prefix};
    return fnv1a64(h, flags, sizeof flags);
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

static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Reads the cache if its header matches; returns 1 when there is no usable cache. */
static int cache_read(TokenData *d, const char *path, uint32_t vocab_size, uint64_t hash)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return 1;
    unsigned char header[TOKEN_CACHE_HEADER];
    int stale = fread(header, 1, sizeof header, fp) != sizeof header ||
                memcmp(header, TOKEN_CACHE_MAGIC, 4) != 0 ||
                get_u32(header + 4) != TOKEN_CACHE_VERSION || get_u32(header + 8) != vocab_size ||
                get_u64(header + 16) != hash;
    uint64_t n = stale ? 0 : get_u64(header + 24);
    if (stale || n == 0 || n > SIZE_MAX / 4) {
        fclose(fp);
        return 1;
    }
    unsigned char *raw = malloc(n * 4);
    d->tokens = malloc(n * sizeof(int));
    bool ok = raw && d->tokens && fread(raw, 4, n, fp) == n && fgetc(fp) == EOF;
    for (uint64_t i = 0; ok && i < n; i++) {
        uint32_t id = get_u32(raw + 4 * i);
        ok = id < vocab_size;
        d->tokens[i] = (int)id;
    }
    free(raw);
    fclose(fp);
    if (!ok) {
        free(d->tokens);
        d->tokens = NULL;
        return 1;
    }
    d->n_tokens = n;
    return 0;
}

static int cache_write(const TokenData *d, const char *path, uint32_t vocab_size, uint64_t hash,
                       Error *err)
{
    AtomicFile af;
    if (atomic_file_open(&af, path, err) != 0)
        return -1;
    unsigned char header[TOKEN_CACHE_HEADER] = {0};
    memcpy(header, TOKEN_CACHE_MAGIC, 4);
    put_u32(header + 4, TOKEN_CACHE_VERSION);
    put_u32(header + 8, vocab_size);
    put_u64(header + 16, hash);
    put_u64(header + 24, d->n_tokens);
    fwrite(header, 1, sizeof header, af.fp);
    for (size_t i = 0; i < d->n_tokens; i++) {
        unsigned char id[4];
        put_u32(id, (uint32_t)d->tokens[i]);
        fwrite(id, 1, 4, af.fp);
    }
    return atomic_file_commit(&af, err);
}

/* Appends the tokens of one file (starting with <s>) to d. */
static int tokenize_file(TokenData *d, size_t *cap, const char *text, size_t len,
                         const Tokenizer *tok, const char *path, Error *err)
{
    int *ids;
    size_t n;
    if (tokenizer_encode(tok, text, len, true, &ids, &n, err) != 0)
        return error_prefix(err, "%s", path);
    if (d->n_tokens + n > *cap) {
        size_t grown = (d->n_tokens + n) * 2;
        int *bigger = realloc(d->tokens, grown * sizeof(int));
        if (!bigger) {
            free(ids);
            return error_set(err, "%s: out of memory for %zu tokens", path, grown);
        }
        d->tokens = bigger;
        *cap = grown;
    }
    memcpy(d->tokens + d->n_tokens, ids, n * sizeof(int));
    d->n_tokens += n;
    free(ids);
    return 0;
}

/* Reads every file once: hashes it for the cache key and, when `tokenize`, encodes it. */
static int sources_scan(TokenData *d, const char *const *paths, int n_paths, const Tokenizer *tok,
                        bool tokenize, uint64_t *hash, Error *err)
{
    size_t cap = 0;
    *hash = tokenizer_hash(tok);
    for (int i = 0; i < n_paths; i++) {
        char *text;
        size_t len;
        if (file_read_all(paths[i], &text, &len, err) != 0)
            return -1;
        *hash = fnv1a64(*hash, &len, sizeof len);
        *hash = fnv1a64(*hash, text, len);
        int status = tokenize ? tokenize_file(d, &cap, text, len, tok, paths[i], err) : 0;
        free(text);
        if (status != 0)
            return -1;
    }
    return 0;
}

int data_load(TokenData *d, const char *const *paths, int n_paths, const Tokenizer *tok,
              const char *cache_path, Error *err)
{
    memset(d, 0, sizeof *d);
    if (n_paths == 0)
        return error_set(err, "no data files given (--data FILE...)");
    uint64_t hash;
    bool cached = false;
    if (cache_path) {
        if (sources_scan(d, paths, n_paths, tok, false, &hash, err) != 0)
            return -1;
        cached = cache_read(d, cache_path, (uint32_t)tok->n_vocab, hash) == 0;
    }
    if (!cached) {
        if (sources_scan(d, paths, n_paths, tok, true, &hash, err) != 0) {
            data_free(d);
            return -1;
        }
        if (cache_path && cache_write(d, cache_path, (uint32_t)tok->n_vocab, hash, err) != 0) {
            data_free(d);
            return -1;
        }
    }
    d->n_train = d->n_tokens - d->n_tokens / 10;
    return 0;
}

void data_free(TokenData *d)
{
    if (!d)
        return;
    free(d->tokens);
    memset(d, 0, sizeof *d);
}

const int *data_split(const TokenData *d, DataSplit split, size_t *n)
{
    switch (split) {
    case SPLIT_TRAIN:
        *n = d->n_train;
        return d->tokens;
    case SPLIT_VAL:
        *n = d->n_tokens - d->n_train;
        return d->tokens + d->n_train;
    case SPLIT_ALL:
        break;
    }
    *n = d->n_tokens;
    return d->tokens;
}

size_t data_window_count(const TokenData *d, DataSplit split, int T)
{
    size_t n;
    data_split(d, split, &n);
    return n > (size_t)T ? (n - 1) / (size_t)T : 0;
}

void data_batch(const TokenData *d, DataSplit split, int B, int T, Rng *rng,
                uint64_t first_window, int *inputs, int *targets)
{
    size_t n;
    const int *tokens = data_split(d, split, &n);
    size_t windows = data_window_count(d, split, T);
    for (int b = 0; b < B; b++) {
        size_t start = rng ? (size_t)rng_below(rng, n - (size_t)T)
                           : (size_t)((first_window + (uint64_t)b) % windows) * (size_t)T;
        memcpy(inputs + (size_t)b * T, tokens + start, (size_t)T * sizeof(int));
        memcpy(targets + (size_t)b * T, tokens + start + 1, (size_t)T * sizeof(int));
    }
}
