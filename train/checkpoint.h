/* Checkpoints. A run directory holds:
 *   model.gguf   the model and its tokenizer, for inference: llama.cpp runs it as is;
 *   train_state  everything `--resume` needs, self-contained so that it never depends on
 *                model.gguf being from the same step: also a GGUF file (same reader, same
 *                validation), with the model and tokenizer, the AdamW moments as tensors
 *                quill.adamw.m / quill.adamw.v, and the keys quill.step (steps done),
 *                quill.rng_state (the batch sampler's RNG) and quill.config (the resolved
 *                config as JSON). The data position follows from these two: random
 *                windows come from the RNG, consecutive windows from the step.
 * Both files are written atomically (temp file, fsync, rename), train_state first: a run
 * killed at any moment leaves the last complete checkpoint of each loadable. */
#ifndef QUILL_TRAIN_CHECKPOINT_H
#define QUILL_TRAIN_CHECKPOINT_H

#include <stdint.h>

#include "error.h"
#include "gguf.h"
#include "model.h"
#include "optimizer.h"
#include "tokenizer.h"

typedef struct {
    int step;           /* optimizer steps completed */
    uint64_t rng_state; /* the batch sampler's RNG state */
    char *config_json;  /* the resolved config (malloc'd when loaded) */
} TrainProgressState;

/* Writes DIR/train_state then DIR/model.gguf. */
int checkpoint_save(const char *dir, const Model *m, const Tokenizer *tok, const Optimizer *o,
                    const TrainProgressState *state, Error *err);

/* Reads DIR/train_state after checking its checksums: the model, tokenizer, optimizer
 * (AdamW when the moments are present, SGD otherwise) and progress. On failure nothing is
 * left allocated. */
int checkpoint_load(const char *dir, Model *m, Tokenizer *tok, Optimizer *o,
                    TrainProgressState *state, Error *err);
/* The part of checkpoint_load after the checksums: the training state from a parsed
 * file. */
int checkpoint_read(const GgufFile *f, Model *m, Tokenizer *tok, Optimizer *o,
                    TrainProgressState *state, Error *err);

/* The pieces, for another kind of run that keeps its own tensors (quill finetune's
 * adapter): the progress keys and the AdamW moments added to a writer; the checksums added
 * and the file written (atomically); a file opened and its checksums checked (the error
 * names the path); the progress and the moments (of n parameters) read back. */
void checkpoint_add_progress(GgufWriter *w, const Optimizer *o, const TrainProgressState *state);
int checkpoint_write_sealed(GgufWriter *w, const char *path, Error *err);
int checkpoint_open_verified(const char *path, GgufFile **f, Error *err);
int checkpoint_read_progress(const GgufFile *f, TrainProgressState *state, Error *err);
int checkpoint_read_optimizer(const GgufFile *f, Optimizer *o, size_t n, Error *err);

#endif
