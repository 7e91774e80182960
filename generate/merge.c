/* quill merge BASE.gguf ADAPTER.gguf OUT.gguf: the model with a LoRA adapter written into
 * its weights (docs/cli.md). Each weight the adapter changes becomes
 *
 *     W' = W + scale * B A        (out, in) = (out, in) + (out, rank) . (rank, in)
 *
 * with scale = --lora-scale * alpha / rank (lora.h), so that W' x is the W x + scale * B (A x)
 * that quill generate --lora computes, up to rounding. W is dequantized row by row, changed,
 * and quantized again: to its own type (the default), or as quill quantize would store
 * the model in --type TYPE; quantize.c does the rows and the writing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "generate.h"
#include "loader.h"
#include "lora.h"
#include "matmul.h"
#include "quant.h"
#include "quantize.h"

/* One weight's change, in floats: B, and A already multiplied by the scale. */
typedef struct {
    const char *name; /* the base model's tensor */
    int rank, in;
    float *scaled_a;  /* (rank, in) */
    float *b;         /* (out, rank) */
} WeightChange;

typedef struct {
    int n;
    WeightChange *changes;
} MergePlan;

static const void *plan_find(const void *ctx, const GgufTensor *t)
{
    const MergePlan *p = ctx;
    for (int i = 0; i < p->n; i++)
        if (strcmp(p->changes[i].name, t->name) == 0)
            return &p->changes[i];
    return NULL;
}

/* Row r of W' = row r of W + sum over k of B[r][k] * (scale * A[k]). */
static void change_row(const void *state, int64_t r, float *x, int64_t n)
{
    const WeightChange *c = state;
    for (int k = 0; k < c->rank; k++) {
        float b = c->b[r * c->rank + k];
        const float *a = c->scaled_a + (size_t)k * c->in;
        for (int64_t i = 0; i < n; i++)
            x[i] += b * a[i];
    }
}

/* A factor as floats (rows x cols, malloc'd), whatever its type. */
static float *factor_floats(const WeightMatrix *w)
{
    float *f = malloc((size_t)w->rows * w->cols * sizeof *f);
    if (f)
        quant_dequantize_row(w->type, w->data, f, (int64_t)w->rows * w->cols);
    return f;
}

/* The base tensor's name of a pair (the row of the model's table whose weight it targets). */
static const char *target_name(const Model *m, const LoraPair *p)
{
    for (int i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].weight == p->target)
            return m->tensors[i].name;
    return NULL;
}

static int plan_init(MergePlan *plan, const Model *m, const LoraAdapter *ad, float user_scale,
                     Error *err)
{
    plan->changes = calloc((size_t)ad->n_pairs, sizeof *plan->changes);
    if (!plan->changes)
        return error_set(err, "out of memory");
    for (int i = 0; i < ad->n_pairs; i++, plan->n++) {
        const LoraPair *p = &ad->pairs[i];
        WeightChange *c = &plan->changes[i];
        *c = (WeightChange){.name = target_name(m, p), .rank = p->a.rows, .in = p->a.cols,
                            .scaled_a = factor_floats(&p->a), .b = factor_floats(&p->b)};
        if (!c->scaled_a || !c->b)
            return error_set(err, "out of memory");
        float scale = lora_pair_scale(ad, p, user_scale);
        for (size_t k = 0; k < (size_t)c->rank * c->in; k++)
            c->scaled_a[k] *= scale;
    }
    return 0;
}

static void plan_free(MergePlan *plan)
{
    for (int i = 0; i < plan->n; i++) {
        free(plan->changes[i].scaled_a);
        free(plan->changes[i].b);
    }
    free(plan->changes);
}

/* The base model (mapped; its file is what is rewritten), the adapter checked against it,
 * and the file written. */
static int merge(const char *base_path, const char *adapter_path, const char *out_path,
                 const char *type, float scale, Error *err)
{
    Model m;
    Tokenizer tok;
    if (model_file_load(base_path, &m, &tok, err) != 0)
        return -1;
    tokenizer_free(&tok);
    LoraAdapter ad;
    MergePlan plan = {0};
    int status = lora_adapter_load(&ad, adapter_path, &m, err);
    if (status == 0) {
        TensorEdit edit = {plan_find, change_row, &plan};
        status = plan_init(&plan, &m, &ad, scale, err) == 0 &&
                         quantize_write(m.file, out_path, type, &edit, err) == 0
                     ? 0
                     : -1;
        plan_free(&plan);
        lora_adapter_free(&ad);
    }
    model_free(&m);
    return status;
}

int cmd_merge(int argc, char **argv, Error *err)
{
    const char *type = NULL;
    float scale = 1.0f;
    int threads = 0;
    const Flag flags[] = {
        {"type", FLAG_STRING, &type, 0, 0,
         "store the weights as quill quantize TYPE does (default: each keeps its type)"},
        {"lora-scale", FLAG_FLOAT, &scale, -1000, 1000, "the adapter's scale (as generate's)"},
        {"threads", FLAG_INT, &threads, 0, 1024, "threads (0: all cores)"},
    };
    const CommandSpec spec = {
        .usage = "usage: quill merge BASE.gguf ADAPTER.gguf OUT.gguf [--type TYPE] "
                 "[--lora-scale S]\n\n"
                 "Writes the model BASE (a file or a run directory) with the LoRA adapter\n"
                 "ADAPTER merged into its weights: W + scale * alpha / rank * B A. The merged\n"
                 "weights keep their types unless --type names others (quill quantize's).\n",
        .flags = flags,
        .n_flags = sizeof flags / sizeof *flags,
        .min_positional = 3,
        .max_positional = 3,
    };
    const char *positional[3];
    int n_positional;
    int parsed = cli_parse_command(&spec, argc, argv, positional, &n_positional, stdout, err);
    if (parsed != 0)
        return parsed < 0 ? -1 : 0;
    compute_set_threads(threads);
    char base_path[4096];
    model_path_resolve(positional[0], base_path, sizeof base_path);
    const char *adapter_path = positional[1], *out_path = positional[2];
    if (quantize_check_out_path("merge", base_path, out_path, err) != 0 ||
        quantize_check_out_path("merge", adapter_path, out_path, err) != 0)
        return -1;
    return merge(base_path, adapter_path, out_path, type, scale, err);
}
