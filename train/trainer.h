/* The training state and one optimizer step, shared by `quill train` and `quill bench`.
 *
 * A step:
 *   grad_accum micro-batches: forward, loss, backward, each scaled by 1/grad_accum, so
 *   that their sum is the gradient of one batch grad_accum times larger
 *   -> global gradient norm -> learning rate -> optimizer update of the clipped gradient.
 *
 * The micro-batches' gradients are added in a fixed binary tree (split each range at its
 * middle, add the halves' sums), not one after another: with MPI (distributed.h) each of
 * N ranks computes one contiguous block of the micro-batches, the ranks then add their
 * blocks in the same tree, and the sum is the same float, so a job's model does not
 * depend on how many ranks ran it. Every rank draws every micro-batch's windows from the
 * RNG (and uses its own), so all stay on the same random sequence. */
#ifndef QUILL_TRAIN_TRAINER_H
#define QUILL_TRAIN_TRAINER_H

#include "config.h"
#include "data.h"
#include "distributed.h"
#include "error.h"
#include "governor.h"
#include "model.h"
#include "optimizer.h"
#include "rng.h"
#include "tokenizer.h"

typedef struct {
    TrainConfig cfg;       /* resolved */
    const char *dir;       /* the run directory */
    Model model;
    Tokenizer tok;
    Optimizer opt;
    const Dist *dist;      /* the MPI job this rank is part of (size 1: none) */
    float *grads;          /* the one gradient buffer, in the model's layout */
    ParamViews grad_views;
    int tree_levels;       /* buffers of the gradient tree: grads, then tree[1..] */
    float **tree;          /* (tree_levels) parameter-sized buffers; tree[0] = grads */
    ParamViews *tree_views;
    float *reduce_scratch; /* the exchange buffer of dist_sum_floats (MPI jobs only) */
    size_t *shards;        /* ZeRO: rank r updates parameters [shards[r], shards[r + 1]) */
    double *micro_losses;  /* (grad_accum) */
    size_t *starts;        /* (grad_accum, B) where each micro-batch's windows start */
    Activations acts;
    GradScratch scratch;
    TokenData data;
    Rng rng;               /* batch sampling */
    int step;              /* steps completed */
    int vocab_asked;       /* a new bpe run: the vocabulary size asked for (the text may
                              give fewer pieces); 0 otherwise */
    int *inputs, *targets; /* (B, T) */
    ThreadGovernor governor; /* how many threads a step runs on (governor.h) */
} Trainer;

/* What one step measured. */
typedef struct {
    float loss;     /* mean over the step's tokens */
    float lr;
    double grad_norm; /* before clipping */
    double seconds;
} StepStats;

/* A new run from t->cfg (resolved) and t->dir: trains the tokenizer on the data files,
 * initialises the model from the seed and creates the optimizer. */
int trainer_setup_new(Trainer *t, Error *err);
/* A new run that fine-tunes the base model in the open GGUF file `base` (base.h; `path`
 * names it in messages): its weights, widened to F32, and its own tokenizer; t->cfg was
 * built over the base's architecture (base_config_apply, base_config_check). */
int trainer_setup_from_base(Trainer *t, const GgufFile *base, const char *path, Error *err);
/* Gets the token stream (from the cache in t->dir when it is valid, else by tokenizing
 * into it: t->dir must exist) and allocates the step's buffers; after trainer_setup_new or
 * after loading a checkpoint into t. A damaged cache is rebuilt and reported in `warning`.
 * With --zero 1 in an MPI job, keeps only this rank's shard of the optimizer's moments. */
int trainer_prepare(Trainer *t, Error *warning, Error *err);
/* The optimizer with every moment, for a checkpoint: t->opt itself, or (ZeRO) the shards
 * gathered onto rank 0 into *full, which the caller frees with optimizer_free. */
int trainer_full_optimizer(Trainer *t, Optimizer *full, const Optimizer **out, Error *err);
/* Bytes of memory this rank holds for parameters, gradients, optimizer state and
 * activations (the header of quill train). */
size_t trainer_memory_bytes(const Trainer *t);
/* One optimizer step. Fails without updating the parameters when the loss or the
 * gradient is not finite. */
int trainer_step(Trainer *t, StepStats *stats, Error *err);
void trainer_free(Trainer *t); /* everything but t->dir */

#endif
