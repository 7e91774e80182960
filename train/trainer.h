/* The training state and one optimizer step, shared by `quill train` and `quill bench`.
 *
 * A step:
 *   grad_accum micro-batches: forward, loss, backward (gradients add up, each scaled by
 *   1/grad_accum, so the step equals one batch grad_accum times larger)
 *   -> global gradient norm -> learning rate -> optimizer update of the clipped gradient. */
#ifndef QUILL_TRAIN_TRAINER_H
#define QUILL_TRAIN_TRAINER_H

#include "config.h"
#include "data.h"
#include "error.h"
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
    float *grads;          /* the one gradient buffer, in the model's layout */
    ParamViews grad_views;
    Activations acts;
    GradScratch scratch;
    TokenData data;
    Rng rng;               /* batch sampling */
    int step;              /* steps completed */
    int *inputs, *targets; /* (B, T) */
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
/* Gets the token stream (from the cache in t->dir when it is valid, else by tokenizing:
 * nothing is written) and allocates the step's buffers; after trainer_setup_new or after
 * loading a checkpoint into t. A damaged cache is rebuilt and reported in `warning`. */
int trainer_prepare(Trainer *t, Error *warning, Error *err);
/* Writes t->dir/tokens.bin when the stream did not come from it. */
int trainer_save_data_cache(const Trainer *t, Error *err);
/* One optimizer step. Fails without updating the parameters when the loss or the
 * gradient is not finite. */
int trainer_step(Trainer *t, StepStats *stats, Error *err);
void trainer_free(Trainer *t); /* everything but t->dir */

#endif
