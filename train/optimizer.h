/* Optimizers, gradient clipping and the learning-rate schedule.
 *
 * Both optimizers walk the parameter buffer as one flat array, tensor by tensor only to
 * know which tensors are decayed (not the RMSNorm gains). */
#ifndef QUILL_TRAIN_OPTIMIZER_H
#define QUILL_TRAIN_OPTIMIZER_H

#include <stddef.h>

#include "error.h"
#include "model.h"

typedef enum {
    OPTIMIZER_ADAMW, /* Loshchilov & Hutter 2019: Adam with decoupled weight decay */
    OPTIMIZER_SGD,   /* plain gradient descent: p -= lr * (g + weight_decay * p) */
} OptimizerKind;

typedef struct {
    OptimizerKind kind;
    float beta1;        /* AdamW: decay of the gradient average (0.9) */
    float beta2;        /* AdamW: decay of the squared-gradient average (0.95) */
    float eps;          /* AdamW: added to sqrt(v), 1e-8 */
    float weight_decay; /* decoupled: p -= lr * weight_decay * p, for decayed tensors */
    size_t n;           /* parameters */
    size_t lo, hi;      /* the parameters this optimizer updates: all (0, n), or a shard
                           of them (ZeRO stage 1 across MPI ranks, optimizer_shard) */
    float *m;           /* AdamW first moments (hi - lo), then second moments: one buffer; */
    float *v;           /*   m[i - lo] belongs to parameter i */
} Optimizer;

int optimizer_init(Optimizer *o, OptimizerKind kind, size_t n, Error *err);
void optimizer_free(Optimizer *o); /* NULL-safe */

/* Keeps the moments of parameters [lo, hi) only, and from then on updates only those
 * (ZeRO stage 1: each rank keeps a shard of the optimizer state; the ranks then share
 * the updated parameters). */
int optimizer_shard(Optimizer *o, size_t lo, size_t hi, Error *err);

/* One update of the optimizer's parameters [lo, hi) of m from grad_scale * grads (the
 * scale is how clipping enters: folding it into the update saves a pass over the
 * gradients). `step` counts from 0; AdamW's bias correction uses step + 1 updates so far. */
void optimizer_step(Optimizer *o, Model *m, const float *grads, float grad_scale, float lr,
                    int step);

/* The same update for a buffer of parameters that are all decayed alike (a LoRA adapter's
 * factors, lora_train.h): params [lo, hi) from grad_scale * grads. */
void optimizer_step_flat(Optimizer *o, float *params, const float *grads, float grad_scale,
                         float lr, int step);

/* The global L2 norm of all gradients, summed in double in a fixed order (the same value
 * for any thread count). */
double grad_global_norm(const float *grads, size_t n);
/* The factor that brings a gradient of global norm `norm` down to max_norm: 1 when it is
 * already small enough or clipping is off (max_norm <= 0). */
float grad_clip_scale(double norm, float max_norm);

/* Learning rate at `step` (from 0): linear warmup from lr/(warmup+1) to lr over `warmup`
 * steps, then cosine decay from lr to min_lr at decay_steps, then min_lr. The same
 * schedule as nanoGPT's get_lr. */
float lr_schedule(int step, float lr, float min_lr, int warmup, int decay_steps);

#endif
