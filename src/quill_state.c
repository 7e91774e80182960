/* libquill: a sequence's state (its tokens and KV cache) to a file and back, as llama.cpp's
 * save-load-state example does. The file, little-endian:
 *
 *   "QUILLKV\0"                      magic (8 bytes)
 *   u32 version (2), u32 cache type   the cache's GgmlType: rows are stored as they lie
 *   u32 vocab, layers, dim, kv dim    the model's shape, for a readable message ...
 *   u64 model identity                ... and the hash of its tensors' names, types, shapes
 *   u64 adapters                      the LoRA adapters that computed the cache: a hash of
 *                                     each one's identity (lora.h) and user scale, in the
 *                                     order the context applies them; 0 for none
 *   u64 row bytes                     one position's keys (or values) of one layer
 *   u64 n                             positions
 *   i32 tokens[n]
 *   keys:   layer 0 rows 0..n-1, layer 1 rows 0..n-1, ...   (row bytes each)
 *   values: the same
 *   u64 checksum                      XXH3 of every byte before it
 *
 * A file is checked whole (checksum, then every field against the context) before anything
 * of the context changes, so a damaged file, one from another model, cache type or set of
 * adapters, or one longer than the context is an error that leaves the sequence as it was.
 * (Version 1, without the adapters, is refused by its version.) */
#include <stdlib.h>
#include <string.h>

#include "fileio.h"
#include "hash.h"
#include "quill_internal.h"

static const char STATE_MAGIC[8] = "QUILLKV";
enum { STATE_VERSION = 2 };
_Static_assert(sizeof(quill_token) == sizeof(int32_t), "tokens are stored as i32");

typedef struct {
    char magic[8];
    uint32_t version, cache_type;
    uint32_t vocab, layers, dim, kv_dim;
    uint64_t identity, adapters, row_bytes;
    uint64_t n_tokens; /* 64 bits: the header has no padding, so it is written as it is */
} StateHeader;
_Static_assert(sizeof(StateHeader) == 64, "the header as the format above lists it");

/* The adapters a context applies, as the header records them: each adapter's identity and
 * the bits of its scale chained through the hash in order (the same adapters in another
 * order give the same sums only up to rounding, so the order counts); 0 when none. */
static uint64_t adapters_identity(const LoraSet *s)
{
    uint64_t value = 0;
    for (int i = 0; i < s->n; i++) {
        uint32_t scale_bits;
        memcpy(&scale_bits, &s->uses[i].scale, sizeof scale_bits);
        uint64_t link[3] = {value, s->uses[i].adapter->identity, scale_bits};
        value = hash64(link, sizeof link);
    }
    return value;
}

/* The header a state of n positions of c has. */
static StateHeader state_header(const quill_context *c, int n)
{
    const ModelConfig *m = &c->model->model.config;
    StateHeader h = {.version = STATE_VERSION, .cache_type = c->infer.acts.kv_type,
                     .vocab = (uint32_t)m->vocab_size, .layers = (uint32_t)m->n_layers,
                     .dim = (uint32_t)m->dim, .kv_dim = (uint32_t)model_kv_dim(m),
                     .identity = c->model->identity,
                     .adapters = adapters_identity(&c->infer.lora),
                     .row_bytes = c->infer.acts.kv_row_bytes,
                     .n_tokens = (uint64_t)n};
    memcpy(h.magic, STATE_MAGIC, sizeof h.magic);
    return h;
}

/* Bytes of a state file with header h (checksum included). */
static size_t state_size(const StateHeader *h)
{
    return sizeof *h + (size_t)h->n_tokens * sizeof(int32_t) +
           2 * (size_t)h->layers * h->n_tokens * h->row_bytes + sizeof(uint64_t);
}

/* Copies the cache rows of one sequence between the context and a file's bytes: every
 * layer's keys, then every layer's values (to_file chooses the direction). */
static void copy_rows(const quill_context *c, int seq, int n, uint8_t *bytes, bool to_file)
{
    const Activations *a = &c->infer.acts;
    size_t run = (size_t)n * a->kv_row_bytes; /* a slot's positions are contiguous */
    uint8_t *caches[2] = {a->kv_k, a->kv_v};
    for (int kv = 0; kv < 2; kv++)
        for (int l = 0; l < c->model->model.config.n_layers; l++, bytes += run) {
            uint8_t *rows = activations_kv_row(a, caches[kv], l, seq, 0);
            memmove(to_file ? bytes : rows, to_file ? rows : bytes, run);
        }
}

int quill_state_save(const quill_context *c, int seq, const char *path)
{
    const char *fn = "quill_state_save";
    if (api_check_handle(c, fn, "context") != QUILL_OK ||
        api_check_handle(path, fn, "path") != QUILL_OK || api_check_seq(c, seq, fn) != QUILL_OK)
        return QUILL_ERROR;
    int n = infer_seq_length(&c->infer, seq);
    StateHeader h = state_header(c, n);
    size_t size = state_size(&h);
    uint8_t *bytes = malloc(size);
    if (!bytes)
        return api_fail_as(QUILL_ERROR_MEMORY, "%s: out of memory for %zu bytes", fn, size);
    uint8_t *at = bytes;
    memcpy(at, &h, sizeof h);
    at += sizeof h;
    if (n > 0) /* quill_token is int32_t */
        memcpy(at, infer_seq_tokens(&c->infer, seq), (size_t)n * sizeof(int32_t));
    at += (size_t)n * sizeof(int32_t);
    copy_rows(c, seq, n, at, true);
    uint64_t checksum = hash64(bytes, size - sizeof checksum);
    memcpy(bytes + size - sizeof checksum, &checksum, sizeof checksum);
    Error err;
    int status = file_write_atomic(path, bytes, size, &err);
    free(bytes);
    return status == 0 ? QUILL_OK : api_fail_as(QUILL_ERROR_FILE, "%s: %s", fn, err.msg);
}

/* Checks a state file's bytes against the context: QUILL_OK, or an error naming what does
 * not match. */
static int state_check(const quill_context *c, const char *path, const uint8_t *bytes,
                       size_t size, StateHeader *h)
{
    const char *fn = "quill_state_load";
    uint64_t stored;
    if (size < sizeof *h + sizeof stored)
        return api_fail_as(QUILL_ERROR_FILE, "%s: %s is %zu bytes, too short for a state file", fn,
                           path, size);
    memcpy(&stored, bytes + size - sizeof stored, sizeof stored);
    memcpy(h, bytes, sizeof *h);
    if (memcmp(h->magic, STATE_MAGIC, sizeof h->magic) != 0)
        return api_fail_as(QUILL_ERROR_FILE, "%s: %s is not a quill state file", fn, path);
    if (hash64(bytes, size - sizeof stored) != stored)
        return api_fail_as(QUILL_ERROR_FILE,
                           "%s: %s is damaged (its checksum does not match its content)", fn, path);
    if (h->version != STATE_VERSION)
        return api_fail_as(QUILL_ERROR_FILE, "%s: %s has version %u; this library reads version %d",
                           fn, path, h->version, STATE_VERSION);
    StateHeader want = state_header(c, 0);
    if (h->identity != want.identity || h->vocab != want.vocab || h->layers != want.layers ||
        h->dim != want.dim || h->kv_dim != want.kv_dim)
        return api_fail_as(QUILL_ERROR_FILE,
                           "%s: %s was saved from another model (vocabulary %u, %u layers of %u; "
                           "this one: %u, %u of %u, or other tensors)",
                           fn, path, h->vocab, h->layers, h->dim, want.vocab, want.layers,
                           want.dim);
    if (h->cache_type != want.cache_type || h->row_bytes != want.row_bytes)
        return api_fail_as(QUILL_ERROR_CONTEXT, "%s: %s holds a %s cache; this context's is %s", fn,
                           path, gguf_tensor_type_name(h->cache_type),
                           gguf_tensor_type_name(want.cache_type));
    if (h->adapters != want.adapters)
        return api_fail_as(QUILL_ERROR_CONTEXT,
                           "%s: %s was saved with other LoRA adapters (or scales) than this "
                           "context applies (it applies %d): its keys and values were "
                           "computed with other weights; apply the same with "
                           "quill_context_set_lora first",
                           fn, path, c->infer.lora.n);
    if (h->n_tokens > (uint64_t)c->infer.params.n_ctx)
        return api_fail_as(QUILL_ERROR_CONTEXT, "%s: %s holds %llu positions; the context holds %d",
                           fn, path, (unsigned long long)h->n_tokens, c->infer.params.n_ctx);
    if (state_size(h) != size)
        return api_fail_as(QUILL_ERROR_FILE, "%s: %s is %zu bytes; %llu positions take %zu", fn,
                           path, size, (unsigned long long)h->n_tokens, state_size(h));
    return QUILL_OK;
}

int quill_state_load(quill_context *c, int seq, const char *path)
{
    const char *fn = "quill_state_load";
    if (api_check_handle(c, fn, "context") != QUILL_OK ||
        api_check_handle(path, fn, "path") != QUILL_OK || api_check_seq(c, seq, fn) != QUILL_OK)
        return QUILL_ERROR;
    char *data;
    size_t size;
    Error err;
    if (file_read_all(path, &data, &size, &err) != 0)
        return api_fail_as(QUILL_ERROR_FILE, "%s: %s", fn, err.msg);
    const uint8_t *bytes = (const uint8_t *)data;
    StateHeader h;
    int status = state_check(c, path, bytes, size, &h);
    if (status == QUILL_OK) {
        /* the sequence becomes the file's: its tokens, then its rows */
        int n = (int)h.n_tokens, n_ctx = c->infer.params.n_ctx;
        if (n > 0)
            memcpy(c->infer.seq_tokens + (size_t)seq * n_ctx, bytes + sizeof h,
                   (size_t)n * sizeof(int32_t));
        copy_rows(c, seq, n, (uint8_t *)data + sizeof h + (size_t)n * sizeof(int32_t), false);
        c->infer.seq_len[seq] = n;
    }
    free(data);
    return status;
}
