#include "lora.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "ops.h"
#include "ops_internal.h"
#include "quant.h"
#include "rng.h"

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* general.type, adapter.type and the architecture: what makes a file an adapter for a
 * llama model, the only architecture quill runs. */
static int check_metadata(const GgufFile *f, float *alpha, Error *err)
{
    const char *type = "", *adapter_type = "", *arch = "";
    Error unused;
    gguf_get_str(f, "general.type", &type, &unused);
    gguf_get_str(f, "adapter.type", &adapter_type, &unused);
    gguf_get_str(f, "general.architecture", &arch, &unused);
    if (strcmp(type, "adapter") != 0)
        return error_set(err, "not an adapter: general.type is '%s', expected 'adapter' (the "
                              "model comes first, an adapter after --lora)",
                         *type ? type : "missing");
    if (strcmp(adapter_type, "lora") != 0)
        return error_set(err, "adapter.type is '%s', expected 'lora'", adapter_type);
    if (strcmp(arch, "llama") != 0)
        return error_set(err, "the adapter is for the architecture '%s', the model is 'llama'",
                         arch);
    *alpha = 0.0f;
    if (gguf_find_kv(f, "adapter.lora.alpha") &&
        gguf_get_f32(f, "adapter.lora.alpha", alpha, err) != 0)
        return -1;
    return 0;
}

/* The model's weight named `name` (NULL: none). */
static const ParamTensor *model_tensor(const Model *m, const char *name)
{
    for (int i = 0; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0)
            return &m->tensors[i];
    return NULL;
}

/* A factor as a matrix quill multiplies: two dimensions, a type quant.h multiplies, rows
 * its block divides. */
static int factor_view(const GgufTensor *t, WeightMatrix *w, Error *err)
{
    const char *type = gguf_tensor_type_name(t->type);
    if (t->n_dims != 2)
        return error_set(err, "tensor '%s' has %u dimensions, expected 2", t->name, t->n_dims);
    if (!quant_can_multiply(t->type) || t->ne[0] % (uint64_t)quant_block_size(t->type) != 0)
        return error_set(err, "tensor '%s' has type %s, which quill cannot multiply in rows of "
                              "%llu",
                         t->name, type ? type : "unknown", (unsigned long long)t->ne[0]);
    *w = (WeightMatrix){t->type, t->data, (int)t->ne[1], (int)t->ne[0]};
    return 0;
}

/* The pair of the base tensor `base` (a name without .lora_a / .lora_b): both present, and
 * A (rank, in), B (out, rank) for the model's (out, in). */
static int pair_bind(LoraPair *p, const GgufFile *f, const Model *m, const char *base,
                     Error *err)
{
    char name_a[176], name_b[176];
    snprintf(name_a, sizeof name_a, "%s.lora_a", base);
    snprintf(name_b, sizeof name_b, "%s.lora_b", base);
    const GgufTensor *a = gguf_find_tensor(f, name_a), *b = gguf_find_tensor(f, name_b);
    if (!a || !b)
        return error_set(err, "tensor '%s' has no '%s' to pair with", a ? name_a : name_b,
                         a ? name_b : name_a);
    const ParamTensor *t = model_tensor(m, base);
    if (!t)
        return error_set(err, "tensor '%s': the model has no weight '%s' (maybe another "
                              "base model?)",
                         name_a, base);
    /* token_embd's factors are laid out the other way round (A indexed by token) */
    if (t->kind == PARAM_NORM || t->kind == PARAM_EMBEDDING)
        return error_set(err, "tensor '%s': quill applies adapters to the blocks' projections "
                              "and output.weight, not to '%s'",
                         name_a, base);
    if (factor_view(a, &p->a, err) != 0 || factor_view(b, &p->b, err) != 0)
        return -1;
    if (p->a.cols != t->cols || p->b.rows != t->rows)
        return error_set(err, "tensors '%s' [%d, %d] and '%s' [%d, %d] do not fit '%s' "
                              "[%d, %d] (expected [%d, rank] and [rank, %d]; maybe another "
                              "base model?)",
                         name_a, p->a.cols, p->a.rows, name_b, p->b.cols, p->b.rows, base,
                         t->cols, t->rows, t->cols, t->rows);
    if (p->a.rows != p->b.cols)
        return error_set(err, "tensors '%s' and '%s' disagree on the rank: %d and %d", name_a,
                         name_b, p->a.rows, p->b.cols);
    p->target = t->weight;
    return 0;
}

/* Every tensor of the file: a pair is bound at its lora_a (pair_bind looks for the
 * lora_b); a lora_b only needs its lora_a to be there. */
static int pairs_bind(LoraAdapter *ad, const Model *m, Error *err)
{
    const GgufFile *f = ad->file;
    ad->pairs = calloc(f->n_tensors ? f->n_tensors : 1, sizeof *ad->pairs);
    if (!ad->pairs)
        return error_set(err, "out of memory");
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const char *name = f->tensors[i].name;
        bool is_a = ends_with(name, ".lora_a"), is_b = ends_with(name, ".lora_b");
        if (!is_a && !is_b) {
            if (ends_with(name, "_norm.weight"))
                continue;
            return error_set(err, "tensor '%s' is not a .lora_a or .lora_b factor", name);
        }
        /* the base weight's name: the factor's without its suffix */
        char base[160], name_a[176];
        size_t len = strlen(name) - strlen(".lora_a");
        if (len >= sizeof base)
            return error_set(err, "tensor '%s': the name is too long", name);
        memcpy(base, name, len);
        base[len] = '\0';
        snprintf(name_a, sizeof name_a, "%s.lora_a", base);
        if (is_b && !gguf_find_tensor(f, name_a))
            return error_set(err, "tensor '%s' has no '%s' to pair with", name, name_a);
        if (is_a && pair_bind(&ad->pairs[ad->n_pairs++], f, m, base, err) != 0)
            return -1;
    }
    if (ad->n_pairs == 0)
        return error_set(err, "the adapter holds no lora_a / lora_b pair");
    return 0;
}

/* a->identity: alpha and every tensor with its bytes (XXH3 reads tens of GB/s, and the
 * pages it reads are the ones every forward pass reads anyway). */
static int adapter_identity(LoraAdapter *a, Error *err)
{
    Hash64Stream *h = hash64_stream_new();
    if (!h)
        return error_set(err, "out of memory");
    hash64_stream_add(h, &a->alpha, sizeof a->alpha);
    gguf_hash_tensors(a->file, true, h);
    a->identity = hash64_stream_value(h);
    hash64_stream_free(h);
    return 0;
}

int lora_adapter_load(LoraAdapter *a, const char *path, const Model *m, Error *err)
{
    memset(a, 0, sizeof *a);
    if (gguf_open(&a->file, path, err) != 0)
        return -1;
    if (check_metadata(a->file, &a->alpha, err) != 0 || pairs_bind(a, m, err) != 0 ||
        adapter_identity(a, err) != 0) {
        error_prefix(err, "%s", path);
        lora_adapter_free(a);
        return -1;
    }
    return 0;
}

void lora_adapter_free(LoraAdapter *a)
{
    if (!a)
        return;
    free(a->pairs);
    gguf_close(a->file);
    memset(a, 0, sizeof *a);
}

float lora_pair_scale(const LoraAdapter *a, const LoraPair *p, float user_scale)
{
    return a->alpha != 0.0f ? user_scale * a->alpha / (float)p->a.rows : user_scale;
}

int lora_set_init(LoraSet *s, const LoraUse *uses, int n, int max_rows, Error *err)
{
    memset(s, 0, sizeof *s);
    if (n <= 0)
        return 0;
    size_t rank = 1, scratch = 0;
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < uses[i].adapter->n_pairs; k++) {
            const LoraPair *p = &uses[i].adapter->pairs[k];
            size_t a_bytes = linear_scratch_bytes(&p->a, max_rows);
            size_t b_bytes = linear_scratch_bytes(&p->b, max_rows);
            rank = (size_t)p->a.rows > rank ? (size_t)p->a.rows : rank;
            scratch = a_bytes > scratch ? a_bytes : scratch;
            scratch = b_bytes > scratch ? b_bytes : scratch;
        }
    }
    s->uses = malloc((size_t)n * sizeof *s->uses);
    s->ax = malloc((size_t)max_rows * rank * sizeof *s->ax);
    s->scratch = scratch ? malloc(scratch) : NULL;
    if (!s->uses || !s->ax || (scratch && !s->scratch)) {
        lora_set_free(s);
        return error_set(err, "out of memory for the adapters' scratch");
    }
    memcpy(s->uses, uses, (size_t)n * sizeof *s->uses);
    s->n = n;
    s->max_rows = max_rows;
    return 0;
}

void lora_set_free(LoraSet *s)
{
    if (!s)
        return;
    free(s->uses);
    free(s->ax);
    free(s->scratch);
    free(s->dropped);
    memset(s, 0, sizeof *s);
}

int lora_set_dropout(LoraSet *s, float p, Error *err)
{
    int in = 0;
    for (int i = 0; i < s->n; i++)
        for (int k = 0; k < s->uses[i].adapter->n_pairs; k++)
            if (s->uses[i].adapter->pairs[k].a.cols > in)
                in = s->uses[i].adapter->pairs[k].a.cols;
    free(s->dropped);
    s->dropped_floats = (size_t)s->max_rows * in;
    s->dropped = malloc(s->dropped_floats * sizeof *s->dropped);
    if (!s->dropped)
        return error_set(err, "out of memory for the adapter's dropout");
    s->dropout = p;
    return 0;
}

void lora_dropout_apply(const LoraSet *s, int k, float *out, const float *x, int N, int in)
{
    /* keep when a uniform 24-bit draw is >= p: probability 1 - p */
    uint32_t drop_below = (uint32_t)(s->dropout * 16777216.0f);
    float keep_scale = 1.0f / (1.0f - s->dropout);
    uint64_t pair_seed = rng_mix(s->dropout_seed ^ rng_mix((uint64_t)k));
#pragma omp parallel for schedule(static) if ((size_t)N * in >= PARALLEL_MIN_WORK)
    for (int n = 0; n < N; n++)
        for (int i = 0; i < in; i++) {
            size_t at = (size_t)n * in + i;
            bool keep = (uint32_t)(rng_mix(pair_seed + at) >> 40) >= drop_below;
            out[at] = keep ? x[at] * keep_scale : 0.0f;
        }
}

/* out += scale * (inp . A^T) . B^T: first the small product ax = inp . A^T (N, rank), scaled,
 * then B adds it back up to out's width (linear_forward's beta = 1 accumulates). With
 * dropout (pair k of the set's only adapter, in training), inp is masked first. */
static void pair_forward(const LoraSet *s, int k, const LoraPair *p, float scale, float *out,
                         int ldo, const float *inp, int N)
{
    int rank = p->a.rows;
    if (s->dropout > 0.0f) {
        lora_dropout_apply(s, k, s->dropped, inp, N, p->a.cols);
        inp = s->dropped;
    }
    linear_forward(s->ax, rank, inp, N, &p->a, 0.0f, s->scratch);
    for (size_t i = 0; i < (size_t)N * rank; i++)
        s->ax[i] *= scale;
    linear_forward(out, ldo, s->ax, N, &p->b, 1.0f, s->scratch);
}

void lora_forward(const LoraSet *s, const WeightMatrix *w, float *out, int ldo, const float *inp,
                  int N)
{
    for (int i = 0; i < s->n; i++) {
        const LoraAdapter *ad = s->uses[i].adapter;
        for (int k = 0; k < ad->n_pairs; k++)
            if (ad->pairs[k].target == w)
                pair_forward(s, k, &ad->pairs[k],
                             lora_pair_scale(ad, &ad->pairs[k], s->uses[i].scale), out, ldo, inp,
                             N);
    }
}
