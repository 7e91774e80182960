#include "infer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loader.h"

enum { DEFAULT_BATCH = 512 };

/* The tokens one forward pass takes at most: n_batch (DEFAULT_BATCH when 0), no more than
 * the context holds. */
static int infer_batch(const InferParams *p)
{
    int batch = p->n_batch > 0 ? p->n_batch : DEFAULT_BATCH;
    return batch < p->n_ctx ? batch : p->n_ctx;
}

/* What the activations hold: a pass takes either up to n_batch tokens of one sequence or
 * one token of each. */
static InferenceShape infer_shape(const InferParams *p)
{
    int batch = infer_batch(p);
    return (InferenceShape){.slots = p->n_seq, .max_tokens = batch > p->n_seq ? batch : p->n_seq,
                            .n_ctx = p->n_ctx, .kv_type = p->cache_type,
                            .all_logits = p->all_logits};
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
    c->seq_len = calloc((size_t)p->n_seq, sizeof *c->seq_len);
    if (!c->seq_len)
        return error_set(err, "out of memory");
    if (activations_init_inference(&c->acts, m, &shape, err) != 0) {
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
    free(c->seq_len);
    memset(c, 0, sizeof *c);
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
    /* a decoding step is a unit the governor measures; a prompt runs on what it chose */
    if (n == 1)
        governor_unit_begin(&c->governor);
    else
        governor_apply(&c->governor);
    for (int done = 0; done < n;) {
        int chunk = n - done < c->params.n_batch ? n - done : c->params.n_batch;
        model_forward_slots(c->model, &c->acts, tokens + done, 1, chunk, c->seq_len[seq], &seq);
        c->seq_len[seq] += chunk;
        c->n_logits = c->acts.last_logits ? 1 : chunk;
        done += chunk;
    }
    if (n == 1)
        governor_unit_end(&c->governor, 1);
    return 0;
}

int infer_decode_batch(InferContext *c, const int *seqs, const int *tokens, int n, Error *err)
{
    if (n <= 0 || n > c->params.n_seq)
        return error_set(err, "decode: %d sequences in a batch of at most %d", n,
                         c->params.n_seq);
    int pos = c->seq_len[seqs[0]];
    for (int i = 0; i < n; i++) {
        if (seqs[i] < 0 || seqs[i] >= c->params.n_seq || c->seq_len[seqs[i]] != pos)
            return error_set(err, "decode: the sequences of a batch must hold the same number "
                                  "of positions");
        if (check_room(c, seqs[i], 1, err) != 0)
            return -1;
    }
    governor_unit_begin(&c->governor);
    model_forward_slots(c->model, &c->acts, tokens, n, 1, pos, seqs);
    governor_unit_end(&c->governor, n);
    for (int i = 0; i < n; i++)
        c->seq_len[seqs[i]]++;
    c->n_logits = n;
    return 0;
}

const float *infer_logits(const InferContext *c, int i)
{
    return c->acts.logits + (size_t)i * c->model->config.vocab_size;
}

void infer_seq_copy(InferContext *c, int src, int dst, int shared)
{
    activations_cache_copy(&c->acts, c->model, src, dst, shared, c->seq_len[src]);
    c->seq_len[dst] = c->seq_len[src];
}

void infer_seq_clear(InferContext *c, int seq)
{
    c->seq_len[seq] = 0;
}

int infer_seq_length(const InferContext *c, int seq)
{
    return c->seq_len[seq];
}

size_t infer_cache_bytes(const InferContext *c)
{
    return activations_cache_bytes(&c->acts, c->model);
}
