/* libquill: contexts (a KV cache of n sequences), batches, the sequences' caches and
 * embeddings. A context is infer.h's InferContext; a batch's rows go to
 * infer_decode_batch as they are. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "loader.h"
#include "matmul.h"
#include "quill_internal.h"

/* ---- contexts ------------------------------------------------------------------------- */

quill_context_params quill_context_params_default(void)
{
    return (quill_context_params){.n_ctx = 0, .n_seq = 1, .n_batch = 0, .n_threads = 0,
                                  .cache_type = QUILL_CACHE_DEFAULT};
}

/* The GgmlType of a cache type, or -1 for a value outside the enum. */
static int cache_ggml_type(const quill_model *m, quill_cache_type t)
{
    switch (t) {
    case QUILL_CACHE_DEFAULT: return (int)m->cache_type;
    case QUILL_CACHE_F32: return GGML_TYPE_F32;
    case QUILL_CACHE_F16: return GGML_TYPE_F16;
    case QUILL_CACHE_Q8_0: return GGML_TYPE_Q8_0;
    }
    return -1;
}

/* The InferParams of p, or QUILL_ERROR with a message naming the field that is wrong. */
static int context_infer_params(const quill_model *m, const quill_context_params *p,
                                InferParams *out)
{
    const char *fn = "quill_context_new";
    if (p->n_ctx < 0 || p->n_seq < 1 || p->n_batch < 0 || p->n_threads < 0)
        return api_fail("%s: n_ctx %d, n_seq %d, n_batch %d, n_threads %d (n_seq >= 1, the "
                        "others >= 0; 0 is the default)",
                        fn, p->n_ctx, p->n_seq, p->n_batch, p->n_threads);
    int type = cache_ggml_type(m, p->cache_type);
    if (type < 0)
        return api_fail("%s: cache type %d is not a quill_cache_type", fn, (int)p->cache_type);
    *out = (InferParams){.n_seq = p->n_seq,
                         .n_ctx = p->n_ctx > 0 ? p->n_ctx : m->model.config.context,
                         .n_batch = p->n_batch, .cache_type = (uint32_t)type};
    return QUILL_OK;
}

quill_context *quill_context_new(quill_model *m, const quill_context_params *p)
{
    if (api_check_handle(m, "quill_context_new", "model") != QUILL_OK)
        return NULL;
    if (m->vocab_only) {
        api_fail("quill_context_new: the model was loaded with vocab_only: it has no weights");
        return NULL;
    }
    quill_context_params params = p ? *p : quill_context_params_default();
    InferParams infer;
    if (context_infer_params(m, &params, &infer) != QUILL_OK)
        return NULL;
    quill_context *c = calloc(1, sizeof *c);
    if (!c) {
        api_fail_as(QUILL_ERROR_MEMORY, "quill_context_new: out of memory");
        return NULL;
    }
    c->model = m;
    c->n_threads = params.n_threads > 0 ? params.n_threads : m->n_threads;
    api_context_use_threads(c); /* the per-thread scratch is sized for the thread count */
    Error err;
    if (infer_init(&c->infer, &m->model, &infer, &err) != 0) {
        api_error_as(QUILL_ERROR_MEMORY, &err); /* the cache does not fit, or no memory */
        free(c);
        return NULL;
    }
    return c;
}

void quill_context_free(quill_context *c)
{
    if (!c)
        return;
    infer_free(&c->infer);
    free(c->row_logits);
    free(c);
}

int quill_context_n_ctx(const quill_context *c)
{
    return c ? c->infer.params.n_ctx : 0;
}

int quill_context_n_seq(const quill_context *c)
{
    return c ? c->infer.params.n_seq : 0;
}

int quill_context_describe(const quill_context *c, char *buf, size_t cap)
{
    if (api_check_handle(c, "quill_context_describe", "context") != QUILL_OK)
        return -1;
    const InferParams *p = &c->infer.params;
    size_t bytes = infer_cache_bytes(&c->infer);
    char line[160];
    int n = snprintf(line, sizeof line, "KV cache %zu bytes = %.2f MB (%s, %d positions%s)",
                     bytes, bytes / 1e6, kv_cache_type_name(p->cache_type), p->n_ctx,
                     p->n_seq > 1 ? " per sequence" : "");
    return api_copy_out(line, (size_t)n, buf, cap);
}

quill_perf quill_context_perf(const quill_context *c)
{
    return c ? c->perf : (quill_perf){0};
}

/* The compute threads are the calling thread's (matmul.c keeps them per thread): set them
 * to the context's count before it computes. */
void api_context_use_threads(const quill_context *c)
{
    int wanted = c->n_threads > 0 ? c->n_threads : omp_get_num_procs();
    if (compute_max_threads() != wanted)
        compute_set_threads(wanted);
}

/* ---- batches ---------------------------------------------------------------------------- */

quill_batch quill_batch_new(int capacity)
{
    quill_batch b = {0};
    if (capacity <= 0) {
        api_fail("quill_batch_new: a capacity of %d rows", capacity);
        return b;
    }
    size_t n = (size_t)capacity;
    b.token = malloc(n * sizeof *b.token);
    b.pos = malloc(n * sizeof *b.pos);
    b.seq = malloc(n * sizeof *b.seq);
    b.logits = malloc(n * sizeof *b.logits);
    if (!b.token || !b.pos || !b.seq || !b.logits) {
        quill_batch_free(&b);
        api_fail_as(QUILL_ERROR_MEMORY, "quill_batch_new: out of memory");
        return b;
    }
    b.capacity = capacity;
    return b;
}

void quill_batch_free(quill_batch *b)
{
    if (!b)
        return;
    free(b->token);
    free(b->pos);
    free(b->seq);
    free(b->logits);
    memset(b, 0, sizeof *b);
}

void quill_batch_clear(quill_batch *b)
{
    if (b)
        b->n_tokens = 0;
}

int quill_batch_add(quill_batch *b, quill_token token, int pos, int seq, bool logits)
{
    if (api_check_handle(b, "quill_batch_add", "batch") != QUILL_OK)
        return QUILL_ERROR;
    if (b->n_tokens >= b->capacity)
        return api_fail("quill_batch_add: the batch is full (%d rows)", b->capacity);
    int i = b->n_tokens++;
    b->token[i] = token;
    b->pos[i] = pos;
    b->seq[i] = seq;
    b->logits[i] = logits;
    return QUILL_OK;
}

/* ---- decoding ----------------------------------------------------------------------------- */

/* The batch's logits flags as the bool array InferBatch takes. */
static int batch_logit_flags(quill_context *c, const quill_batch *b)
{
    Error err;
    if (buffer_reserve_items(&c->row_logits, &c->row_logits_cap, (size_t)b->n_tokens,
                             sizeof *c->row_logits, (size_t)b->n_tokens, "batch rows",
                             &err) != 0)
        return api_error_as(QUILL_ERROR_MEMORY, &err);
    for (int i = 0; i < b->n_tokens; i++)
        c->row_logits[i] = b->logits[i] != 0;
    return QUILL_OK;
}

int quill_decode(quill_context *c, const quill_batch *b)
{
    if (api_check_handle(c, "quill_decode", "context") != QUILL_OK ||
        api_check_handle(b, "quill_decode", "batch") != QUILL_OK)
        return QUILL_ERROR;
    if (b->n_tokens <= 0 || b->n_tokens > b->capacity || !b->token || !b->pos || !b->seq ||
        !b->logits)
        return api_fail("quill_decode: a batch of %d rows (capacity %d)", b->n_tokens,
                        b->capacity);
    int n_vocab = c->model->tok.n_vocab;
    for (int i = 0; i < b->n_tokens; i++) /* a bad id is the caller's, not the context's */
        if (b->token[i] < 0 || b->token[i] >= n_vocab)
            return api_fail("quill_decode: row %d: token %d is not in the vocabulary (0 to %d)",
                            i, b->token[i], n_vocab - 1);
    if (batch_logit_flags(c, b) != QUILL_OK)
        return QUILL_ERROR;
    api_context_use_threads(c);
    InferBatch batch = {.token = b->token, .pos = b->pos, .seq = b->seq,
                        .logits = c->row_logits, .n = b->n_tokens};
    Error err;
    if (infer_decode_batch(&c->infer, &batch, &err) != 0)
        return api_error_as(QUILL_ERROR_CONTEXT, &err);
    return QUILL_OK;
}

const float *quill_logits(const quill_context *c, int row)
{
    if (api_check_handle(c, "quill_logits", "context") != QUILL_OK)
        return NULL;
    const float *logits = infer_batch_logits(&c->infer, row);
    if (!logits)
        api_fail("quill_logits: row %d of the last batch did not ask for logits", row);
    return logits;
}

/* ---- the sequences' caches ----------------------------------------------------------------- */

int quill_seq_length(const quill_context *c, int seq)
{
    if (api_check_handle(c, "quill_seq_length", "context") != QUILL_OK ||
        api_check_seq(c, seq, "quill_seq_length") != QUILL_OK)
        return -1;
    return infer_seq_length(&c->infer, seq);
}

int quill_seq_tokens(const quill_context *c, int seq, quill_token *out, int cap)
{
    if (api_check_handle(c, "quill_seq_tokens", "context") != QUILL_OK ||
        api_check_seq(c, seq, "quill_seq_tokens") != QUILL_OK)
        return -1;
    if (cap < 0 || (cap > 0 && !out))
        return api_fail("quill_seq_tokens: a buffer of %d tokens at %p", cap, (void *)out);
    int n = infer_seq_length(&c->infer, seq);
    if (cap > 0 && n > 0)
        memcpy(out, infer_seq_tokens(&c->infer, seq), (size_t)(n < cap ? n : cap) * sizeof *out);
    return n;
}

int quill_seq_clear(quill_context *c, int seq)
{
    if (api_check_handle(c, "quill_seq_clear", "context") != QUILL_OK ||
        api_check_seq(c, seq, "quill_seq_clear") != QUILL_OK)
        return QUILL_ERROR;
    infer_seq_clear(&c->infer, seq);
    return QUILL_OK;
}

int quill_seq_copy(quill_context *c, int src, int dst)
{
    if (api_check_handle(c, "quill_seq_copy", "context") != QUILL_OK ||
        api_check_seq(c, src, "quill_seq_copy") != QUILL_OK ||
        api_check_seq(c, dst, "quill_seq_copy") != QUILL_OK)
        return QUILL_ERROR;
    if (src != dst)
        infer_seq_copy(&c->infer, src, dst, 0);
    return QUILL_OK;
}

int quill_seq_truncate(quill_context *c, int seq, int p0, int p1)
{
    if (api_check_handle(c, "quill_seq_truncate", "context") != QUILL_OK ||
        api_check_seq(c, seq, "quill_seq_truncate") != QUILL_OK)
        return QUILL_ERROR;
    Error err;
    if (infer_seq_truncate(&c->infer, seq, p0, p1, &err) != 0)
        return api_error_as(QUILL_ERROR_CONTEXT, &err);
    return QUILL_OK;
}

int quill_seq_shift(quill_context *c, int seq, int n_keep, int n_discard)
{
    if (n_keep < 0 || n_discard < 0)
        return api_fail("quill_seq_shift: n_keep %d and n_discard %d must be >= 0", n_keep,
                        n_discard);
    return quill_seq_truncate(c, seq, n_keep, n_keep + n_discard);
}

/* ---- embeddings --------------------------------------------------------------------------- */

/* Adds (mean) or writes (last) the final hidden states of the pass just run, rows [0, n):
 * the last block's output through the output norm, as the output layer reads it. */
static void pool_pass(const quill_context *c, int n, quill_pooling pooling, float *sum,
                      float *row)
{
    const Model *m = &c->model->model;
    const Activations *a = &c->infer.acts;
    int C = m->config.dim;
    float rstd;
    for (int i = pooling == QUILL_POOL_LAST ? n - 1 : 0; i < n; i++) {
        rmsnorm_forward(row, &rstd, a->resid_final + (size_t)i * C, m->wt.output_norm.data, 1,
                        C, m->config.norm_eps);
        for (int j = 0; j < C; j++)
            sum[j] = pooling == QUILL_POOL_LAST ? row[j] : sum[j] + row[j];
    }
}

static void scale_to_unit_length(float *v, int n)
{
    double norm = 0.0;
    for (int i = 0; i < n; i++)
        norm += (double)v[i] * v[i];
    norm = sqrt(norm);
    for (int i = 0; norm > 0.0 && i < n; i++)
        v[i] = (float)(v[i] / norm);
}

static int check_embed(const quill_context *c, int seq, const quill_token *tokens, int n,
                       quill_pooling pooling, const float *out)
{
    const char *fn = "quill_embed";
    if (api_check_handle(c, fn, "context") != QUILL_OK ||
        api_check_handle(out, fn, "out") != QUILL_OK ||
        api_check_seq(c, seq, fn) != QUILL_OK)
        return QUILL_ERROR;
    if (n <= 0 || !tokens)
        return api_fail("%s: %d tokens at %p (at least one)", fn, n, (const void *)tokens);
    if (pooling != QUILL_POOL_MEAN && pooling != QUILL_POOL_LAST)
        return api_fail("%s: pooling %d is not a quill_pooling", fn, (int)pooling);
    if (n > c->infer.params.n_ctx)
        return api_fail_as(QUILL_ERROR_CONTEXT,
                           "%s: %d tokens, more than the context's %d positions", fn, n,
                           c->infer.params.n_ctx);
    return QUILL_OK;
}

/* The tokens go through the model in passes of at most a pass's rows (acts.T), and each
 * pass's hidden states are pooled before the next one overwrites them. */
int quill_embed(quill_context *c, int seq, const quill_token *tokens, int n,
                quill_pooling pooling, bool normalize, float *out)
{
    if (check_embed(c, seq, tokens, n, pooling, out) != QUILL_OK)
        return QUILL_ERROR;
    int C = c->model->model.config.dim, rows = c->infer.acts.T;
    float *row = malloc((size_t)C * sizeof *row), *sum = calloc((size_t)C, sizeof *sum);
    int *pos = malloc((size_t)rows * sizeof *pos), *seqs = malloc((size_t)rows * sizeof *seqs);
    int status = row && sum && pos && seqs
                     ? QUILL_OK
                     : api_fail_as(QUILL_ERROR_MEMORY, "quill_embed: out of memory");
    if (status == QUILL_OK) {
        infer_seq_clear(&c->infer, seq);
        api_context_use_threads(c);
    }
    Error err;
    for (int first = 0; status == QUILL_OK && first < n; first += rows) {
        int k = n - first < rows ? n - first : rows;
        for (int i = 0; i < k; i++) {
            pos[i] = first + i;
            seqs[i] = seq;
        }
        InferBatch b = {.token = tokens + first, .pos = pos, .seq = seqs, .n = k};
        if (infer_decode_batch(&c->infer, &b, &err) != 0)
            status = api_error_as(QUILL_ERROR_CONTEXT, &err);
        else
            pool_pass(c, k, pooling, sum, row);
    }
    for (int j = 0; status == QUILL_OK && j < C; j++)
        out[j] = pooling == QUILL_POOL_MEAN ? sum[j] / (float)n : sum[j];
    if (status == QUILL_OK && normalize)
        scale_to_unit_length(out, C);
    free(row);
    free(sum);
    free(pos);
    free(seqs);
    return status;
}
