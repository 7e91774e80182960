#include "infer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "loader.h"

enum { DEFAULT_BATCH = 512 };

/* The tokens one forward pass takes at most: n_batch (DEFAULT_BATCH when 0), no more than
 * the caches of all the sequences hold. */
static int infer_batch(const InferParams *p)
{
    int batch = p->n_batch > 0 ? p->n_batch : DEFAULT_BATCH;
    long long room = (long long)p->n_ctx * p->n_seq;
    return batch < room ? batch : (int)room;
}

/* What the activations hold: a pass takes up to n_batch rows, and a decoding step one row
 * of every sequence however many they are. The logits live in the context (they outlast
 * the passes of a batch), so the activations keep none of their own beyond one per slot. */
static InferenceShape infer_shape(const InferParams *p)
{
    int batch = infer_batch(p);
    return (InferenceShape){.slots = p->n_seq, .max_tokens = batch > p->n_seq ? batch : p->n_seq,
                            .n_ctx = p->n_ctx, .kv_type = p->cache_type};
}

size_t infer_memory_bytes(const Model *m, const InferParams *p)
{
    InferenceShape shape = infer_shape(p);
    return activations_inference_bytes(m, &shape);
}

size_t infer_memory_available(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    unsigned long long kb = 0;
    bool found = false;
    while (f && !found && fgets(line, sizeof line, f))
        found = sscanf(line, "MemAvailable: %llu kB", &kb) == 1;
    if (f)
        fclose(f);
    return found ? (size_t)kb * 1024 : SIZE_MAX;
}

/* A context that would not fit in memory is refused before anything is allocated: an
 * allocation of more than the machine has either fails after seconds of work, or, with
 * the kernel's overcommit, succeeds and gets the process killed when it is touched. */
static int check_memory(const Model *m, const InferParams *p, Error *err)
{
    size_t need = infer_memory_bytes(m, p), available = infer_memory_available();
    if (need <= available)
        return 0;
    size_t cache = model_kv_cache_bytes(&m->config, p->n_seq, p->n_ctx, p->cache_type);
    return error_set(err, "a context of %d positions%s would take %.2f GB of memory (KV cache "
                          "%.2f GB of %s, activations %.2f GB), more than the %.2f GB "
                          "available; give a smaller --context",
                     p->n_ctx, p->n_seq > 1 ? " per sequence" : "", need / 1e9, cache / 1e9,
                     kv_cache_type_name(p->cache_type), (need - cache) / 1e9, available / 1e9);
}

/* The scratch arrays of a context: n_seq next positions, and a pass's rows (acts.T). */
static int scratch_alloc(InferContext *c, Error *err)
{
    size_t seqs = (size_t)c->params.n_seq, rows = (size_t)c->acts.T;
    c->seq_len = calloc(seqs, sizeof *c->seq_len);
    c->seq_tokens = malloc(seqs * (size_t)c->params.n_ctx * sizeof *c->seq_tokens);
    c->next_pos = malloc(seqs * sizeof *c->next_pos);
    c->out_rows = malloc(rows * sizeof *c->out_rows);
    c->row_pos = malloc(rows * sizeof *c->row_pos);
    c->row_seq = malloc(rows * sizeof *c->row_seq);
    c->row_logits = malloc(rows * sizeof *c->row_logits);
    if (!c->seq_len || !c->seq_tokens || !c->next_pos || !c->out_rows || !c->row_pos ||
        !c->row_seq || !c->row_logits)
        return error_set(err, "out of memory");
    return 0;
}

int infer_init(InferContext *c, const Model *m, const InferParams *p, Error *err)
{
    memset(c, 0, sizeof *c);
    if (p->n_seq <= 0 || p->n_ctx <= 0)
        return error_set(err, "inference needs at least one sequence and one position");
    if (check_memory(m, p, err) != 0)
        return -1;
    c->model = m;
    c->params = *p;
    c->params.n_batch = infer_batch(p);
    InferenceShape shape = infer_shape(p);
    governor_init(&c->governor);
    if (activations_init_inference(&c->acts, m, &shape, err) != 0 || scratch_alloc(c, err) != 0) {
        infer_free(c);
        return -1;
    }
    return 0;
}

void infer_free(InferContext *c)
{
    if (!c)
        return;
    activations_free(&c->acts);
    lora_set_free(&c->lora);
    free(c->seq_len);
    free(c->seq_tokens);
    free(c->logits);
    free(c->logit_row);
    free(c->next_pos);
    free(c->out_rows);
    free(c->row_pos);
    free(c->row_seq);
    free(c->row_logits);
    memset(c, 0, sizeof *c);
}

int infer_set_lora(InferContext *c, const LoraUse *uses, int n, Error *err)
{
    LoraSet set;
    if (lora_set_init(&set, uses, n, c->acts.T, err) != 0)
        return -1;
    lora_set_free(&c->lora);
    c->lora = set;
    c->acts.lora = n > 0 ? &c->lora : NULL;
    return 0;
}

/* The row rules (infer.h), checked before anything changes: each row's sequence and token
 * exist, and its position is its sequence's next (next_pos counts the rows seen so far)
 * and inside the context. */
static int batch_check(InferContext *c, const InferBatch *b, Error *err)
{
    int n_seq = c->params.n_seq, n_ctx = c->params.n_ctx, V = c->model->config.vocab_size;
    if (b->n <= 0)
        return error_set(err, "decode: a batch of %d rows", b->n);
    memcpy(c->next_pos, c->seq_len, (size_t)n_seq * sizeof *c->next_pos);
    for (int i = 0; i < b->n; i++) {
        int seq = b->seq[i], pos = b->pos[i];
        if (seq < 0 || seq >= n_seq)
            return error_set(err, "batch row %d: no sequence %d (the context has %d)", i, seq,
                             n_seq);
        if (b->token[i] < 0 || b->token[i] >= V)
            return error_set(err, "batch row %d: token %d is not in the vocabulary of %d", i,
                             b->token[i], V);
        if (pos != c->next_pos[seq])
            return error_set(err, "batch row %d: position %d, but sequence %d's next "
                                  "position is %d (a sequence's rows come in order, each at "
                                  "the position after the one before)",
                             i, pos, seq, c->next_pos[seq]);
        if (pos >= n_ctx)
            return error_set(err, "batch row %d: the context of %d positions is full "
                                  "(sequence %d); give a larger --context",
                             i, n_ctx, seq);
        c->next_pos[seq]++;
    }
    return 0;
}

/* Whether a checked batch is one decoding step: one row of each sequence it names, the unit
 * of decoding speed the governor measures. */
static bool batch_is_step(const InferContext *c, const InferBatch *b)
{
    for (int i = 0; i < b->n; i++)
        if (c->next_pos[b->seq[i]] != c->seq_len[b->seq[i]] + 1)
            return false;
    return true;
}

/* Room for the logits of the rows that ask for them, and each row's index among them. */
static int logits_reserve(InferContext *c, const InferBatch *b, Error *err)
{
    size_t V = (size_t)c->model->config.vocab_size;
    if (buffer_reserve_items(&c->logit_row, &c->rows_cap, (size_t)b->n, sizeof *c->logit_row,
                             (size_t)b->n, "batch rows", err) != 0)
        return -1;
    int wanted = 0;
    for (int i = 0; i < b->n; i++) {
        bool wants = b->logits ? b->logits[i] : i == b->n - 1;
        c->logit_row[i] = wants ? wanted++ : -1;
    }
    if (buffer_reserve_items(&c->logits, &c->logits_cap, (size_t)wanted, V * sizeof *c->logits,
                             (size_t)wanted, "logits rows", err) != 0)
        return -1;
    c->n_logits = wanted;
    c->n_rows = b->n;
    return 0;
}

/* Rows [first, first + n) of a batch as one forward pass; their logits go after the
 * `logits_before` rows of logits earlier passes left. */
static void batch_pass(InferContext *c, const InferBatch *b, int first, int n,
                       int logits_before)
{
    ForwardRows r = {.token = b->token + first, .pos = b->pos + first,
                     .slot = b->seq + first, .n = n, .out_rows = c->out_rows,
                     .logits = c->logits + (size_t)logits_before * c->model->config.vocab_size};
    for (int i = 0; i < n; i++)
        if (c->logit_row[first + i] >= 0)
            c->out_rows[r.n_out++] = i;
    model_forward_rows(c->model, &c->acts, &r);
}

int infer_decode_batch(InferContext *c, const InferBatch *b, Error *err)
{
    if (batch_check(c, b, err) != 0 || logits_reserve(c, b, err) != 0)
        return -1;
    /* a decoding step is a unit the governor measures; a prompt runs on what it chose */
    bool step = batch_is_step(c, b);
    if (step)
        governor_unit_begin(&c->governor);
    else
        governor_apply(&c->governor);
    for (int first = 0, logits_before = 0; first < b->n;) {
        int n = b->n - first < c->acts.T ? b->n - first : c->acts.T;
        batch_pass(c, b, first, n, logits_before);
        for (int i = first; i < first + n; i++)
            logits_before += c->logit_row[i] >= 0;
        first += n;
    }
    if (step)
        governor_unit_end(&c->governor, b->n);
    for (int i = 0; i < b->n; i++)
        c->seq_tokens[(size_t)b->seq[i] * c->params.n_ctx + b->pos[i]] = b->token[i];
    memcpy(c->seq_len, c->next_pos, (size_t)c->params.n_seq * sizeof *c->seq_len);
    return 0;
}

const float *infer_batch_logits(const InferContext *c, int i)
{
    if (i < 0 || i >= c->n_rows || c->logit_row[i] < 0)
        return NULL;
    return infer_logits(c, c->logit_row[i]);
}

static int check_room(const InferContext *c, int seq, int n, Error *err)
{
    if (c->seq_len[seq] + n > c->params.n_ctx)
        return error_set(err, "the context of %d positions is full (%d used, %d more asked "
                              "for); give a larger --context",
                         c->params.n_ctx, c->seq_len[seq], n);
    return 0;
}

int infer_decode(InferContext *c, int seq, const int *tokens, int n, Error *err)
{
    if (seq < 0 || seq >= c->params.n_seq || n <= 0)
        return error_set(err, "decode: no sequence %d, or no tokens", seq);
    if (check_room(c, seq, n, err) != 0)
        return -1;
    /* in passes of n_batch: the logits of every row of a pass (all_logits), or only of the
     * last token */
    for (int done = 0; done < n;) {
        int chunk = n - done < c->params.n_batch ? n - done : c->params.n_batch;
        for (int i = 0; i < chunk; i++) {
            c->row_pos[i] = c->seq_len[seq] + i;
            c->row_seq[i] = seq;
            c->row_logits[i] = c->params.all_logits || done + i == n - 1;
        }
        InferBatch b = {tokens + done, c->row_pos, c->row_seq, c->row_logits, chunk};
        if (infer_decode_batch(c, &b, err) != 0)
            return -1;
        done += chunk;
    }
    return 0;
}

int infer_decode_step(InferContext *c, const int *seqs, const int *tokens, int n, Error *err)
{
    if (n <= 0 || n > c->params.n_seq)
        return error_set(err, "decode: %d sequences in a step of at most %d", n,
                         c->params.n_seq);
    for (int i = 0; i < n; i++) {
        bool known = seqs[i] >= 0 && seqs[i] < c->params.n_seq;
        c->row_pos[i] = known ? c->seq_len[seqs[i]] : 0; /* batch_check names the unknown */
        c->row_logits[i] = true;
    }
    InferBatch b = {tokens, c->row_pos, seqs, c->row_logits, n};
    return infer_decode_batch(c, &b, err);
}

const float *infer_logits(const InferContext *c, int k)
{
    return c->logits + (size_t)k * c->model->config.vocab_size;
}

void infer_seq_copy(InferContext *c, int src, int dst, int shared)
{
    activations_cache_copy(&c->acts, c->model, src, dst, shared, c->seq_len[src]);
    memcpy(c->seq_tokens + (size_t)dst * c->params.n_ctx,
           c->seq_tokens + (size_t)src * c->params.n_ctx,
           (size_t)c->seq_len[src] * sizeof *c->seq_tokens);
    c->seq_len[dst] = c->seq_len[src];
}

void infer_seq_clear(InferContext *c, int seq)
{
    c->seq_len[seq] = 0;
}

int infer_seq_truncate(InferContext *c, int seq, int p0, int p1, Error *err)
{
    if (seq < 0 || seq >= c->params.n_seq)
        return error_set(err, "truncate: no sequence %d (the context has %d)", seq,
                         c->params.n_seq);
    int len = c->seq_len[seq];
    p1 = p1 < 0 ? len : p1;
    if (p0 < 0 || p0 > p1 || p1 > len)
        return error_set(err, "truncate: positions [%d, %d) are not within sequence %d's %d",
                         p0, p1, seq, len);
    if (activations_cache_forget(&c->acts, c->model, seq, p0, p1, len, err) != 0)
        return -1;
    int *tokens = c->seq_tokens + (size_t)seq * c->params.n_ctx;
    memmove(tokens + p0, tokens + p1, (size_t)(len - p1) * sizeof *tokens);
    c->seq_len[seq] = len - (p1 - p0);
    return 0;
}

const int *infer_seq_tokens(const InferContext *c, int seq)
{
    return c->seq_tokens + (size_t)seq * c->params.n_ctx;
}

int infer_seq_length(const InferContext *c, int seq)
{
    return c->seq_len[seq];
}

size_t infer_cache_bytes(const InferContext *c)
{
    return activations_cache_bytes(&c->acts, c->model);
}
