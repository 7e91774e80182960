/* Loading hostile model files: sizes in the metadata that the tensors do not back must be
 * rejected before anything is allocated from them, and a huge context_length must cost
 * nothing until a run asks for that many positions. The files are quill's own tiny model
 * with one u32 key patched in place, the way an attacker (or a bad converter) would. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fileio.h"
#include "gguf.h"
#include "loader.h"
#include "model.h"
#include "test_util.h"

/* Memory a hostile small file may make the loader take: generous for a model of a few
 * kilobytes, far below what the sizes in the patched keys would ask for. */
enum { LOADER_MEMORY_LIMIT = 256 << 20 };

/* Runs the load in a child process whose address space is capped, so that a loader that
 * trusted the metadata fails fast (malloc returns NULL) instead of swapping; the child
 * sends back the status and the message. (A fork of its own, because Criterion's runner
 * threads inside the test process need their memory.) AddressSanitizer reserves terabytes
 * of address space for its shadow memory, so the cap is left off in `make check`. */
typedef struct {
    int status;
    char msg[sizeof(((Error *)0)->msg)];
} LimitedResult;

static LimitedResult load_limited(const char *image, size_t len)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(fds[0]);
#ifndef __SANITIZE_ADDRESS__
        struct rlimit limit = {LOADER_MEMORY_LIMIT, LOADER_MEMORY_LIMIT};
        setrlimit(RLIMIT_AS, &limit);
#endif
        LimitedResult r = {0};
        Error err = {{0}};
        GgufFile *f;
        Model m;
        r.status = gguf_parse_buffer(&f, image, len, &err);
        if (r.status == 0) {
            r.status = model_from_gguf(&m, f, &err);
            if (r.status == 0)
                model_free(&m);
            gguf_close(f);
        }
        memcpy(r.msg, err.msg, sizeof r.msg);
        _exit(write(fds[1], &r, sizeof r) == (ssize_t)sizeof r ? 0 : 1);
    }
    close(fds[1]);
    LimitedResult r;
    ssize_t got = read(fds[0], &r, sizeof r);
    close(fds[0]);
    int wstatus;
    waitpid(pid, &wstatus, 0);
    cr_assert_eq(got, (ssize_t)sizeof r, "the loading process died (status %d)", wstatus);
    return r;
}

/* quill's tiny model written with model_to_gguf, plus the keys add_keys adds, at a fresh path
 * (static buffer). */
static const char *tiny_model_file(void (*add_keys)(GgufWriter *w))
{
    static char path[128];
    ModelConfig c = {.n_layers = 2, .dim = 16, .n_heads = 4, .n_kv_heads = 2, .ffn_dim = 24,
                     .vocab_size = 11, .context = 8, .rope_base = 10000.0f, .norm_eps = 1e-5f};
    Model m;
    Error err;
    cr_assert_eq(model_init(&m, &c, &err), 0, "%s", err.msg);
    model_init_params(&m, 5);
    snprintf(path, sizeof path, "%s/tiny.gguf", test_make_tmpdir());
    GgufWriter *w = gguf_writer_new();
    model_to_gguf(&m, w);
    if (add_keys)
        add_keys(w);
    cr_assert_eq(gguf_writer_write(w, path, &err), 0, "%s", err.msg);
    gguf_writer_free(w);
    model_free(&m);
    return path;
}

/* quill's tiny test model as a GGUF image in memory (malloc'd). */
static char *tiny_model_image(size_t *len)
{
    char *data;
    Error err;
    cr_assert_eq(file_read_all(tiny_model_file(NULL), &data, len, &err), 0, "%s", err.msg);
    return data;
}

/* Overwrites the value of the u32 key `key` in a GGUF image: the key is stored as a u64
 * length and its bytes, then the value type (4 = u32) and the value. */
static void patch_u32_key(char *image, size_t len, const char *key, uint32_t value)
{
    size_t key_len = strlen(key);
    for (size_t i = 8; i + key_len + 8 <= len; i++) {
        if (memcmp(image + i, key, key_len) != 0 || (uint8_t)image[i - 8] != key_len)
            continue;
        char *type = image + i + key_len;
        cr_assert_eq(type[0], GGUF_TYPE_UINT32, "%s is not a u32", key);
        for (int b = 0; b < 4; b++)
            type[4 + b] = (char)(value >> (8 * b));
        return;
    }
    cr_assert_fail("key %s not found in the image", key);
}

/* Loads the tiny model with one key patched, under the memory cap. */
static LimitedResult load_patched(const char *key, uint32_t value)
{
    size_t len;
    char *image = tiny_model_image(&len);
    patch_u32_key(image, len, key, value);
    LimitedResult r = load_limited(image, len);
    free(image);
    return r;
}

Test(loader, block_count_beyond_the_tensors_is_rejected_before_allocating)
{
    const uint32_t counts[] = {3, 131072, 1u << 30};
    int compared = 0;
    for (size_t i = 0; i < sizeof counts / sizeof *counts; i++) {
        LimitedResult r = load_patched("llama.block_count", counts[i]);
        cr_assert_neq(r.status, 0);
        cr_assert_not_null(strstr(r.msg, "llama.block_count"), "block_count %u: %s", counts[i],
                           r.msg);
        compared++;
    }
    cr_assert_eq(compared, 3);
}

Test(loader, sizes_that_contradict_the_tensors_name_the_key_or_tensor)
{
    const struct {
        const char *key;
        uint32_t value;
        const char *named; /* what the message must name */
    } cases[] = {
        {"llama.embedding_length", 1u << 20, "llama.embedding_length"},
        {"llama.embedding_length", 32, "llama.embedding_length"},
        {"llama.feed_forward_length", 1u << 28, "blk.0.ffn_gate.weight"},
        {"llama.attention.head_count_kv", 4, "blk.0.attn_k.weight"},
        {"llama.attention.head_count", 2, "rope.dimension_count"},
    };
    int compared = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        LimitedResult r = load_patched(cases[i].key, cases[i].value);
        cr_assert_neq(r.status, 0, "%s = %u loaded", cases[i].key, cases[i].value);
        cr_assert_not_null(strstr(r.msg, cases[i].named), "%s = %u: %s", cases[i].key,
                           cases[i].value, r.msg);
        compared++;
    }
    cr_assert_eq(compared, 5);
}

/* context_length is the default length of a run, not a size anything is allocated from:
 * 2^26 loads, and the run's own n_ctx decides the RoPE tables and the KV cache. */
Test(loader, huge_context_length_costs_nothing_until_a_run_uses_it)
{
    LimitedResult r = load_patched("llama.context_length", 1u << 26);
    cr_assert_eq(r.status, 0, "%s", r.msg);

    size_t len;
    char *image = tiny_model_image(&len);
    patch_u32_key(image, len, "llama.context_length", 1u << 26);
    GgufFile *f;
    Model m;
    Error err;
    cr_assert_eq(gguf_parse_buffer(&f, image, len, &err), 0, "%s", err.msg);
    cr_assert_eq(model_from_gguf(&m, f, &err), 0, "%s", err.msg);
    cr_assert_eq(m.config.context, 1 << 26);
    Activations a;
    InferenceShape shape = {.slots = 1, .max_tokens = 4, .n_ctx = 16, .all_logits = true};
    cr_assert_eq(activations_init_inference(&a, &m, &shape, &err), 0, "%s", err.msg);
    int tokens[4] = {1, 2, 3, 4};
    model_forward(&m, &a, tokens, 1, 4, 0);
    cr_assert(isfinite(a.logits[3 * m.config.vocab_size]));
    activations_free(&a);
    model_free(&m);
    gguf_close(f);
    free(image);
}

/* ---- keys that change how the model runs -------------------------------------------------- */

/* The blueprint of the tiny model with extra keys; returns model_config_from_gguf's status. */
static int tiny_config(void (*add_keys)(GgufWriter *w), ModelConfig *c, Error *err)
{
    GgufFile *f;
    cr_assert_eq(gguf_open(&f, tiny_model_file(add_keys), err), 0, "%s", err->msg);
    int status = model_config_from_gguf(c, f, err);
    gguf_close(f);
    return status;
}

static void add_linear_4(GgufWriter *w)
{
    gguf_writer_add_str(w, "llama.rope.scaling.type", "linear");
    gguf_writer_add_f32(w, "llama.rope.scaling.factor", 4.0f);
}
static void add_factor_only_3(GgufWriter *w)
{
    gguf_writer_add_f32(w, "llama.rope.scaling.factor", 3.0f);
}
static void add_old_scale_linear_2(GgufWriter *w)
{
    gguf_writer_add_f32(w, "llama.rope.scale_linear", 2.0f);
}
static void add_none_with_factor(GgufWriter *w)
{
    gguf_writer_add_str(w, "llama.rope.scaling.type", "none");
    gguf_writer_add_f32(w, "llama.rope.scaling.factor", 8.0f);
}
static void add_yarn(GgufWriter *w)
{
    gguf_writer_add_str(w, "llama.rope.scaling.type", "yarn");
    gguf_writer_add_f32(w, "llama.rope.scaling.factor", 4.0f);
}
static void add_negative_factor(GgufWriter *w)
{
    gguf_writer_add_str(w, "llama.rope.scaling.type", "linear");
    gguf_writer_add_f32(w, "llama.rope.scaling.factor", -2.0f);
}

/* As llama.cpp reads them (llama-model.cpp): the type is "linear" when absent, the factor
 * comes from rope.scaling.factor or the older rope.scale_linear, "none" ignores the factor,
 * and quill names any other method in its error. */
Test(loader, rope_scaling_keys_are_read_as_llama_cpp_reads_them)
{
    const struct {
        void (*add_keys)(GgufWriter *w);
        float factor; /* the scaling read; 0 for none */
    } cases[] = {
        {NULL, 0.0f},
        {add_linear_4, 4.0f},
        {add_factor_only_3, 3.0f},
        {add_old_scale_linear_2, 2.0f},
        {add_none_with_factor, 0.0f},
    };
    int compared = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        ModelConfig c;
        Error err;
        cr_assert_eq(tiny_config(cases[i].add_keys, &c, &err), 0, "case %zu: %s", i, err.msg);
        cr_expect_eq(c.rope_scaling, cases[i].factor, "case %zu: scaling %g", i, c.rope_scaling);
        compared++;
    }
    cr_assert_eq(compared, 5);
    ModelConfig c;
    Error err;
    cr_assert_neq(tiny_config(add_yarn, &c, &err), 0);
    cr_expect_str_eq(err.msg, "llama.rope.scaling.type 'yarn' is not supported (quill runs "
                              "'none' and 'linear')");
    cr_assert_neq(tiny_config(add_negative_factor, &c, &err), 0);
    cr_expect(strstr(err.msg, "llama.rope.scaling.factor = -2") != NULL, "%s", err.msg);
}

/* A scaling factor survives quill's own writer (a model loaded, trained on and saved). */
Test(loader, rope_scaling_is_written_back)
{
    GgufFile *f;
    Error err;
    cr_assert_eq(gguf_open(&f, tiny_model_file(add_linear_4), &err), 0, "%s", err.msg);
    Model m;
    cr_assert_eq(model_from_gguf(&m, f, &err), 0, "%s", err.msg);
    gguf_close(f);
    char path[256];
    snprintf(path, sizeof path, "%s/again.gguf", test_make_tmpdir());
    GgufWriter *w = gguf_writer_new();
    model_to_gguf(&m, w);
    cr_assert_eq(gguf_writer_write(w, path, &err), 0, "%s", err.msg);
    gguf_writer_free(w);
    model_free(&m);
    cr_assert_eq(gguf_open(&f, path, &err), 0, "%s", err.msg);
    ModelConfig c;
    cr_assert_eq(model_config_from_gguf(&c, f, &err), 0, "%s", err.msg);
    cr_expect_eq(c.rope_scaling, 4.0f);
    gguf_close(f);
}

/* F32 for quill's own F32 models, F16 (llama.cpp's default) for any other file, including
 * one `quill quantize` wrote. */
Test(loader, kv_cache_default_is_f32_for_quills_own_models_and_f16_otherwise)
{
    GgufFile *f;
    Error err;
    cr_assert_eq(gguf_open(&f, tiny_model_file(NULL), &err), 0, "%s", err.msg);
    cr_expect_eq(kv_cache_type_default(f), GGML_TYPE_F32, "quill's own F32 model");
    gguf_close(f);
    cr_expect_eq(kv_cache_type_default(NULL), GGML_TYPE_F32, "a model built in memory");
    SHARED_FILE_OR_SKIP(downloaded, "models/stories260K.gguf");
    cr_assert_eq(gguf_open(&f, downloaded, &err), 0, "%s", err.msg);
    cr_expect_eq(kv_cache_type_default(f), GGML_TYPE_F16, "a model quill did not write");
    gguf_close(f);
    char path[256], command[1024], *out;
    snprintf(path, sizeof path, "%s/q8.gguf", test_make_tmpdir());
    snprintf(command, sizeof command, "%s quantize %s %s Q8_0", test_quill_bin(),
             tiny_model_file(NULL), path);
    cr_assert_eq(test_run_capture(command, &out), 0, "%s", out);
    free(out);
    cr_assert_eq(gguf_open(&f, path, &err), 0, "%s", err.msg);
    cr_expect_eq(kv_cache_type_default(f), GGML_TYPE_F16, "a file quill quantize wrote");
    gguf_close(f);
}
