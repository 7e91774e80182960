/* quill quantize IN.gguf OUT.gguf TYPE: the same model with its weight matrices stored in
 * another type (docs/cli.md). Metadata and 1-D tensors (norms) are copied; each matrix is
 * dequantized to floats (whatever its type) and quantized to the type chosen for it.
 *
 * Which type each tensor gets follows llama.cpp's llama-quant.cpp, so that a quill file and
 * a llama.cpp file of the same TYPE hold the same types:
 *   - the output projection (output.weight, or token_embd.weight when the model ties them)
 *     gets Q6_K for every quantized TYPE but Q8_0: it is the last and most sensitive
 *     product, and one matrix;
 *   - the _M mixes give attn_v and ffn_down Q6_K in the layers use_more_bits() picks;
 *   - a row length the type's block does not divide falls back to a type that fits
 *     (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, then F16), with a line saying so. */
#include <inttypes.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cli.h"
#include "fileio.h"
#include "generate.h"
#include "gguf.h"
#include "loader.h"
#include "matmul.h"
#include "quant.h"
#include "quantize.h"

/* A TYPE of the command line. */
typedef struct {
    const char *name;
    uint32_t base;      /* the type of most weight matrices (GgmlType) */
    uint32_t file_type; /* llama.cpp's LLAMA_FTYPE_* number, stored as general.file_type */
    bool mix;           /* an _M mix: attn_v and ffn_down get more bits in some layers */
} QuantTarget;

/* file_type numbers are llama.h's: ALL_F32 0, MOSTLY_F16 1, Q4_0 2, Q4_1 3, Q8_0 7, Q5_0 8,
 * Q5_1 9, Q4_K_S 14, Q4_K_M 15, Q5_K_S 16, Q5_K_M 17, Q6_K 18, BF16 32. Plain Q4_K and Q5_K
 * (every matrix in that type) are recorded as the nearest llama.cpp type, the _S mix. */
static const QuantTarget TARGETS[] = {
    {"F32", GGML_TYPE_F32, 0, false},     {"F16", GGML_TYPE_F16, 1, false},
    {"BF16", GGML_TYPE_BF16, 32, false},  {"Q8_0", GGML_TYPE_Q8_0, 7, false},
    {"Q4_0", GGML_TYPE_Q4_0, 2, false},   {"Q4_1", GGML_TYPE_Q4_1, 3, false},
    {"Q5_0", GGML_TYPE_Q5_0, 8, false},   {"Q5_1", GGML_TYPE_Q5_1, 9, false},
    {"Q4_K", GGML_TYPE_Q4_K, 14, false},  {"Q5_K", GGML_TYPE_Q5_K, 16, false},
    {"Q6_K", GGML_TYPE_Q6_K, 18, false},  {"Q4_K_M", GGML_TYPE_Q4_K, 15, true},
    {"Q5_K_M", GGML_TYPE_Q5_K, 17, true},
};
enum { N_TARGETS = sizeof TARGETS / sizeof *TARGETS };

/* What the per-tensor rules need to know about the whole model. */
typedef struct {
    bool has_output;     /* an output.weight of its own (else token_embd is the output too) */
    int n_attn_v;        /* attn_v.weight tensors: llama.cpp counts these for their rule */
    int n_layers;        /* <arch>.block_count, or the highest blk.N + 1 */
} ModelShape;

static const QuantTarget *target_find(const char *name)
{
    for (int i = 0; i < N_TARGETS; i++)
        if (strcasecmp(name, TARGETS[i].name) == 0)
            return &TARGETS[i];
    return NULL;
}

static bool type_is_quantized(uint32_t type)
{
    return type != GGML_TYPE_F32 && type != GGML_TYPE_F16 && type != GGML_TYPE_BF16;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* The layer of a "blk.N.*" tensor, or -1. */
static int layer_of(const char *name)
{
    if (strncmp(name, "blk.", 4) != 0)
        return -1;
    char *end;
    long layer = strtol(name + 4, &end, 10);
    return end != name + 4 && *end == '.' && layer >= 0 && layer < 1000000 ? (int)layer : -1;
}

/* Dimensions that are not 1, as ggml counts them: a [256, 1] tensor is a vector. */
static int effective_dims(const GgufTensor *t)
{
    int dims = 1;
    for (uint32_t j = 1; j < t->n_dims; j++)
        if (t->ne[j] > 1)
            dims = (int)j + 1;
    return dims;
}

/* Matrices are converted; vectors (norms), and anything not named *weight, are copied. */
static bool tensor_is_converted(const GgufTensor *t)
{
    return ends_with(t->name, "weight") && effective_dims(t) >= 2 &&
           !strstr(t->name, "_norm.weight");
}

static ModelShape model_shape(const GgufFile *f)
{
    ModelShape s = {0};
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const char *name = f->tensors[i].name;
        s.has_output |= strcmp(name, "output.weight") == 0;
        s.n_attn_v += strstr(name, "attn_v.weight") != NULL;
        int layer = layer_of(name);
        s.n_layers = layer + 1 > s.n_layers ? layer + 1 : s.n_layers;
    }
    const GgufKV *arch = gguf_find_kv(f, "general.architecture");
    if (arch && arch->type == GGUF_TYPE_STRING) {
        char key[128];
        snprintf(key, sizeof key, "%s.block_count", arch->value.s);
        uint32_t n;
        if (gguf_get_u32(f, key, &n, NULL) == 0 && n > 0 && n < 1000000)
            s.n_layers = (int)n;
    }
    return s;
}

/* llama.cpp's use_more_bits: the first and last eighth of the layers, and every third layer
 * in between, get the larger type in the _M mixes. */
static bool use_more_bits(int layer, int n_layers)
{
    return layer < n_layers / 8 || layer >= 7 * n_layers / 8 || (layer - n_layers / 8) % 3 == 2;
}

/* The type llama.cpp's rules give this matrix (before the row-length check). */
static uint32_t rule_type(const QuantTarget *target, const GgufTensor *t, const ModelShape *s)
{
    uint32_t type = target->base;
    if (!type_is_quantized(type))
        return type;
    bool is_output = strcmp(t->name, "output.weight") == 0 ||
                     (!s->has_output && strcmp(t->name, "token_embd.weight") == 0);
    if (is_output) /* rows that Q6_K's block does not divide fall back in choose_type */
        return type == GGML_TYPE_Q8_0 ? type : GGML_TYPE_Q6_K;
    int layer = layer_of(t->name);
    if (target->mix && layer >= 0) {
        if (strstr(t->name, "attn_v.weight") && use_more_bits(layer, s->n_attn_v))
            return GGML_TYPE_Q6_K;
        if (strstr(t->name, "ffn_down") && use_more_bits(layer, s->n_layers))
            return GGML_TYPE_Q6_K;
    }
    return type;
}

/* The type that replaces one whose block does not divide the row length (llama.cpp's). */
static uint32_t fallback_type(uint32_t type)
{
    switch (type) {
    case GGML_TYPE_Q4_K: return GGML_TYPE_Q5_0;
    case GGML_TYPE_Q5_K: return GGML_TYPE_Q5_1;
    case GGML_TYPE_Q6_K: return GGML_TYPE_Q8_0;
    default: return GGML_TYPE_F16;
    }
}

static uint32_t choose_type(const QuantTarget *target, const GgufTensor *t, const ModelShape *s)
{
    uint32_t type = rule_type(target, t, s);
    if (t->ne[0] % (uint64_t)quant_block_size(type) == 0)
        return type;
    uint32_t fallback = fallback_type(type);
    if (t->ne[0] % (uint64_t)quant_block_size(fallback) != 0)
        fallback = GGML_TYPE_F16;
    printf("%s: rows of %" PRIu64 " are not a multiple of %s's block of %" PRId64
           ": using %s instead\n",
           t->name, t->ne[0], gguf_tensor_type_name(type), quant_block_size(type),
           gguf_tensor_type_name(fallback));
    return fallback;
}

/* Converts every row of t into `type`, into a new buffer (*out, *bytes), each row changed
 * by the edit on its way when `state` is not NULL. Rows are independent, so threads take
 * rows; each has its own float row. */
static int tensor_convert(const GgufTensor *t, uint32_t type, const TensorEdit *edit,
                          const void *state, void **out, size_t *bytes, Error *err)
{
    int64_t row_len = (int64_t)t->ne[0];
    int64_t n_rows = (int64_t)(gguf_tensor_nelements(t) / t->ne[0]);
    size_t in_row = quant_row_bytes(t->type, row_len), out_row = quant_row_bytes(type, row_len);
    int n_threads = omp_get_max_threads();
    *bytes = out_row * (size_t)n_rows;
    uint8_t *dst = malloc(*bytes);
    float *rows = malloc((size_t)row_len * (size_t)n_threads * sizeof *rows);
    if (!dst || !rows) {
        free(dst);
        free(rows);
        return error_set(err, "tensor '%s': out of memory", t->name);
    }
#pragma omp parallel for schedule(dynamic, 16) num_threads(n_threads)
    for (int64_t r = 0; r < n_rows; r++) {
        float *x = rows + (size_t)omp_get_thread_num() * (size_t)row_len;
        quant_dequantize_row(t->type, (const uint8_t *)t->data + r * in_row, x, row_len);
        if (state)
            edit->row(state, r, x, row_len);
        quant_quantize_row(type, x, dst + r * out_row, row_len);
    }
    free(rows);
    *out = dst;
    return 0;
}

/* The live progress line, on a terminal only. */
static void progress(bool tty, uint64_t i, uint64_t n, const GgufTensor *t, uint32_t type)
{
    if (!tty)
        return;
    fprintf(stderr, "\r\033[K[%3" PRIu64 "/%" PRIu64 "] %-32s %-5s -> %s", i + 1, n, t->name,
            gguf_tensor_type_name(t->type), gguf_tensor_type_name(type));
    fflush(stderr);
}

/* The input's metadata, with general.file_type and general.quantization_version set (in
 * place when the input has them, as llama.cpp does) when the types change (target not
 * NULL). */
static void copy_metadata(GgufWriter *w, const GgufFile *in, const QuantTarget *target)
{
    bool has_file_type = false, has_version = false;
    for (uint64_t i = 0; i < in->n_kv; i++) {
        const GgufKV *kv = &in->kv[i];
        if (target && strcmp(kv->key, "general.file_type") == 0) {
            gguf_writer_add_u32(w, kv->key, target->file_type);
            has_file_type = true;
        } else if (target && strcmp(kv->key, "general.quantization_version") == 0) {
            gguf_writer_add_u32(w, kv->key, 2);
            has_version = true;
        } else {
            gguf_writer_add_kv(w, kv);
        }
    }
    if (!target)
        return;
    /* ggml's quantization format version: 2 since the K-quants' current layouts */
    if (!has_version)
        gguf_writer_add_u32(w, "general.quantization_version", 2);
    if (!has_file_type)
        gguf_writer_add_u32(w, "general.file_type", target->file_type);
}

/* Every tensor, converted (to the target's type for it, or its own type when target is
 * NULL, when the edit changes it) or borrowed from the input; new buffers go to owned[]. */
static int convert_tensors(GgufWriter *w, const GgufFile *in, const QuantTarget *target,
                           const TensorEdit *edit, void **owned, uint64_t *bytes_out,
                           Error *err)
{
    ModelShape shape = model_shape(in);
    bool tty = isatty(STDERR_FILENO);
    for (uint64_t i = 0; i < in->n_tensors; i++) {
        const GgufTensor *t = &in->tensors[i];
        if (!quant_type_is_supported(t->type))
            return error_set(err, "tensor '%s' has type %s, which quill cannot read", t->name,
                             gguf_tensor_type_name(t->type) ? gguf_tensor_type_name(t->type) : "?");
        bool converted = target && tensor_is_converted(t);
        uint32_t type = converted ? choose_type(target, t, &shape) : t->type;
        const void *state = edit ? edit->find(edit->ctx, t) : NULL;
        progress(tty, i, in->n_tensors, t, type);
        const void *data = t->data;
        size_t bytes = t->nbytes;
        if (type != t->type || state) {
            if (tensor_convert(t, type, edit, state, &owned[i], &bytes, err) != 0)
                return -1;
            data = owned[i];
        }
        *bytes_out += bytes;
        gguf_writer_add_tensor(w, t->name, (GgmlType)type, t->n_dims, t->ne, data);
    }
    if (tty)
        fprintf(stderr, "\r\033[K");
    return 0;
}

int quantize_check_out_path(const char *command, const char *in_path, const char *out_path,
                            Error *err)
{
    if (path_is_directory(out_path))
        return error_set(err, "%s is a directory: name the file to write", out_path);
    if (file_same(in_path, out_path))
        return error_set(err, "%s and %s are the same file: %s would replace the file it "
                              "reads; name another OUT",
                         in_path, out_path, command);
    return 0;
}

static void list_targets(char *buf, size_t size)
{
    buf[0] = '\0';
    for (int i = 0; i < N_TARGETS; i++) {
        strncat(buf, TARGETS[i].name, size - strlen(buf) - 1);
        strncat(buf, i + 1 < N_TARGETS ? ", " : "", size - strlen(buf) - 1);
    }
}

int quantize_write(const GgufFile *in, const char *out_path, const char *type_name,
                   const TensorEdit *edit, Error *err)
{
    char types[256];
    list_targets(types, sizeof types);
    const QuantTarget *target = type_name ? target_find(type_name) : NULL;
    if (type_name && !target)
        return error_set(err, "unknown type '%s' (one of %s)", type_name, types);
    void **owned = calloc(in->n_tensors ? in->n_tensors : 1, sizeof *owned);
    GgufWriter *w = gguf_writer_new();
    uint64_t bytes_out = 0, bytes_in = 0;
    int status = -1;
    if (!owned || !w) {
        error_set(err, "out of memory");
    } else {
        copy_metadata(w, in, target);
        if (convert_tensors(w, in, target, edit, owned, &bytes_out, err) == 0 &&
            gguf_writer_write(w, out_path, err) == 0)
            status = 0;
    }
    for (uint64_t i = 0; i < in->n_tensors; i++) {
        bytes_in += in->tensors[i].nbytes;
        if (owned)
            free(owned[i]);
    }
    if (status == 0)
        printf("%s: %" PRIu64 " tensor%s, %.2f MB -> %.2f MB (%s)\n", out_path, in->n_tensors,
               plural_s((long long)in->n_tensors), (double)bytes_in / 1e6,
               (double)bytes_out / 1e6, target ? target->name : "the input's types");
    free(owned);
    gguf_writer_free(w);
    return status;
}

int cmd_quantize(int argc, char **argv, Error *err)
{
    char types[256];
    list_targets(types, sizeof types);
    char usage[768];
    snprintf(usage, sizeof usage,
             "usage: quill quantize IN.gguf OUT.gguf TYPE [--threads N]\n\n"
             "Writes the model IN (a file or a run directory) with its weight matrices in\n"
             "TYPE: %s.\n"
             "Q4_K_M and Q5_K_M are llama.cpp's mixes; norms stay F32, metadata is copied.\n",
             types);
    int threads = 0;
    const Flag flags[] = {
        {"threads", FLAG_INT, &threads, 0, 1024, "threads (0: all cores)"},
    };
    const CommandSpec spec = {
        .usage = usage,
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
    char in_path[4096];
    model_path_resolve(positional[0], in_path, sizeof in_path);
    const char *out_path = positional[1];
    const QuantTarget *target = target_find(positional[2]);
    if (!target)
        return error_set(err, "unknown type '%s' (one of %s)", positional[2], types);
    if (quantize_check_out_path("quantize", in_path, out_path, err) != 0)
        return -1;

    GgufFile *in;
    if (gguf_open(&in, in_path, err) != 0)
        return -1;
    int status = quantize_write(in, out_path, target->name, NULL, err);
    gguf_close(in);
    return status;
}
