/* LoRA adapter files for tests (test_adapter.h). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"
#include "rng.h"
#include "test_adapter.h"

enum { MAX_PAIRS = 64 };

const AdapterSpec TEST_ADAPTER = {"llama", "adapter", 8.0f, 0.2f, 0.2f, NULL, NULL, 0, false,
                                  GGML_TYPE_F32};

/* n values drawn from +-range, stored as `type` (a new buffer). */
static void *draw_factor(Rng *rng, uint64_t n, float range, GgmlType type)
{
    float *f = malloc(n * sizeof *f);
    for (uint64_t k = 0; k < n; k++)
        f[k] = range * (2.0f * rng_uniform(rng) - 1.0f);
    void *stored = malloc(quant_row_bytes(type, (int64_t)n));
    quant_quantize_row(type, f, stored, (int64_t)n);
    free(f);
    return stored;
}

int test_write_adapter(const char *path, const char *model_path, const AdapterSpec *spec)
{
    GgufFile *model;
    Error err;
    cr_assert_eq(gguf_open(&model, model_path, &err), 0, "%s", err.msg);
    static void *data[2 * MAX_PAIRS];
    static char names[2 * MAX_PAIRS][96];
    GgufWriter *w = gguf_writer_new();
    gguf_writer_add_str(w, "general.architecture", spec->architecture);
    gguf_writer_add_str(w, "general.type", spec->type);
    gguf_writer_add_str(w, "adapter.type", "lora");
    gguf_writer_add_f32(w, "adapter.lora.alpha", spec->alpha);
    Rng rng;
    rng_seed(&rng, 42);
    int n = 0;
    for (uint64_t i = 0; i < model->n_tensors; i++) {
        const GgufTensor *t = &model->tensors[i];
        if (t->n_dims != 2 ||
            (strcmp(t->name, "token_embd.weight") == 0 && !spec->with_token_embd))
            continue;
        cr_assert_lt(n, MAX_PAIRS);
        uint64_t in = t->ne[0] + (uint64_t)spec->a_cols_delta, out = t->ne[1];
        const uint64_t ne_a[2] = {in, TEST_ADAPTER_RANK}, ne_b[2] = {TEST_ADAPTER_RANK, out};
        data[2 * n] = draw_factor(&rng, in * TEST_ADAPTER_RANK, spec->a_range, spec->factor_type);
        data[2 * n + 1] = draw_factor(&rng, out * TEST_ADAPTER_RANK, spec->b_range, spec->factor_type);
        snprintf(names[2 * n], sizeof names[0], "%s.lora_a", t->name);
        snprintf(names[2 * n + 1], sizeof names[0], "%s.lora_b", t->name);
        if (!spec->skip_a || strcmp(spec->skip_a, t->name) != 0)
            gguf_writer_add_tensor(w, names[2 * n], spec->factor_type, 2, ne_a, data[2 * n]);
        if (!spec->skip_b || strcmp(spec->skip_b, t->name) != 0)
            gguf_writer_add_tensor(w, names[2 * n + 1], spec->factor_type, 2, ne_b,
                                   data[2 * n + 1]);
        n++;
    }
    cr_assert_eq(gguf_writer_write(w, path, &err), 0, "%s", err.msg);
    gguf_writer_free(w);
    for (int k = 0; k < 2 * n; k++)
        free(data[k]);
    gguf_close(model);
    return n;
}

