#include "checkpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"

/* train_state carries checksums of its metadata and of every tensor, checked on resume:
 * a bit flipped on disk that still reads as a plausible number is caught, not trained on. */
#define KEY_METADATA_CHECKSUM "quill.checksum.metadata"
#define KEY_TENSOR_CHECKSUMS "quill.checksum.tensors"

static void path_join(char *out, size_t cap, const char *dir, const char *name)
{
    snprintf(out, cap, "%s/%s", dir, name);
}

/* The parts both files share: the model, the tokenizer and the step. */
static GgufWriter *writer_with_model(const Model *m, const Tokenizer *tok, int step)
{
    GgufWriter *w = gguf_writer_new();
    if (!w)
        return NULL;
    model_to_gguf(m, w);
    tokenizer_to_gguf(tok, w);
    gguf_writer_add_u32(w, "quill.step", (uint32_t)step);
    return w;
}

void checkpoint_add_progress(GgufWriter *w, const Optimizer *o, const TrainProgressState *state)
{
    gguf_writer_add_u64(w, "quill.rng_state", state->rng_state);
    gguf_writer_add_str(w, "quill.config", state->config_json);
    if (o->kind == OPTIMIZER_ADAMW) {
        uint64_t ne[1] = {o->n};
        gguf_writer_add_tensor(w, "quill.adamw.m", GGML_TYPE_F32, 1, ne, o->m);
        gguf_writer_add_tensor(w, "quill.adamw.v", GGML_TYPE_F32, 1, ne, o->v);
    }
}

int checkpoint_write_sealed(GgufWriter *w, const char *path, Error *err)
{
    gguf_writer_add_checksums(w, KEY_METADATA_CHECKSUM, KEY_TENSOR_CHECKSUMS);
    return gguf_writer_write(w, path, err);
}

static int write_train_state(const char *path, const Model *m, const Tokenizer *tok,
                             const Optimizer *o, const TrainProgressState *state, Error *err)
{
    GgufWriter *w = writer_with_model(m, tok, state->step);
    if (!w)
        return error_set(err, "%s: out of memory", path);
    checkpoint_add_progress(w, o, state);
    int status = checkpoint_write_sealed(w, path, err);
    gguf_writer_free(w);
    return status;
}

int checkpoint_save(const char *dir, const Model *m, const Tokenizer *tok, const Optimizer *o,
                    const TrainProgressState *state, Error *err)
{
    char path[4096];
    path_join(path, sizeof path, dir, "train_state");
    if (write_train_state(path, m, tok, o, state, err) != 0)
        return -1;
    path_join(path, sizeof path, dir, "model.gguf");
    GgufWriter *w = writer_with_model(m, tok, state->step);
    if (!w)
        return error_set(err, "%s: out of memory", path);
    int status = gguf_writer_write(w, path, err);
    gguf_writer_free(w);
    return status;
}

/* Copies the moment tensor `name` (n floats) into dst. */
static int load_moments(const GgufFile *f, const char *name, float *dst, size_t n, Error *err)
{
    const GgufTensor *t = gguf_find_tensor(f, name);
    if (!t || t->type != GGML_TYPE_F32 || gguf_tensor_nelements(t) != n)
        return error_set(err, "tensor %s is missing or does not match the model's %zu "
                              "parameters",
                         name, n);
    memcpy(dst, t->data, n * sizeof(float));
    return 0;
}

int checkpoint_read_progress(const GgufFile *f, TrainProgressState *state, Error *err)
{
    uint32_t step;
    const char *json;
    const GgufKV *rng = gguf_find_kv(f, "quill.rng_state");
    if (gguf_get_u32(f, "quill.step", &step, err) != 0 ||
        gguf_get_str(f, "quill.config", &json, err) != 0)
        return -1;
    if (!rng || rng->type != GGUF_TYPE_UINT64)
        return error_set(err, "key quill.rng_state is missing or not a u64");
    state->step = (int)step;
    state->rng_state = rng->value.u;
    state->config_json = strdup(json);
    return state->config_json ? 0 : error_set(err, "out of memory");
}

int checkpoint_read_optimizer(const GgufFile *f, Optimizer *o, size_t n, Error *err)
{
    bool adamw = gguf_find_tensor(f, "quill.adamw.m") != NULL;
    if (optimizer_init(o, adamw ? OPTIMIZER_ADAMW : OPTIMIZER_SGD, n, err) != 0)
        return -1;
    if (adamw && (load_moments(f, "quill.adamw.m", o->m, n, err) != 0 ||
                  load_moments(f, "quill.adamw.v", o->v, n, err) != 0)) {
        optimizer_free(o);
        return -1;
    }
    return 0;
}

int checkpoint_read(const GgufFile *f, Model *m, Tokenizer *tok, Optimizer *o,
                    TrainProgressState *state, Error *err)
{
    memset(m, 0, sizeof *m);
    memset(tok, 0, sizeof *tok);
    memset(o, 0, sizeof *o);
    memset(state, 0, sizeof *state);
    if (model_from_gguf(m, f, err) == 0 && tokenizer_from_gguf(tok, f, err) == 0 &&
        checkpoint_read_progress(f, state, err) == 0 &&
        checkpoint_read_optimizer(f, o, m->n_params, err) == 0)
        return 0;
    model_free(m);
    tokenizer_free(tok);
    optimizer_free(o);
    free(state->config_json);
    state->config_json = NULL;
    return -1;
}

int checkpoint_open_verified(const char *path, GgufFile **f, Error *err)
{
    if (gguf_open(f, path, err) != 0)
        return -1;
    if (gguf_verify_checksums(*f, KEY_METADATA_CHECKSUM, KEY_TENSOR_CHECKSUMS, err) == 0)
        return 0;
    gguf_close(*f);
    *f = NULL;
    return error_prefix(err, "%s", path);
}

int checkpoint_load(const char *dir, Model *m, Tokenizer *tok, Optimizer *o,
                    TrainProgressState *state, Error *err)
{
    char path[4096];
    path_join(path, sizeof path, dir, "train_state");
    GgufFile *f;
    memset(state, 0, sizeof *state);
    if (checkpoint_open_verified(path, &f, err) != 0)
        return -1;
    int status = checkpoint_read(f, m, tok, o, state, err);
    gguf_close(f);
    return status == 0 ? 0 : error_prefix(err, "%s", path);
}
