/* Measuring a model's loss on held-out text. */
#ifndef QUILL_TRAIN_EVALUATE_H
#define QUILL_TRAIN_EVALUATE_H

#include <stddef.h>

#include "data.h"
#include "error.h"
#include "model.h"

/* Mean per-token loss over consecutive windows of T+1 tokens of a split, B windows per
 * forward pass (a must be training activations for at least B x T). With max_batches > 0,
 * the first max_batches * B windows (wrapping round a short split); with 0, every window
 * that fits, once. *n_tokens receives the number of predicted tokens that count (all of them,
 * but for chat data's mask). */
int eval_mean_loss(const Model *m, Activations *a, TokenData *d, DataSplit split, int B,
                   int T, int max_batches, double *loss, size_t *n_tokens, Error *err);

#endif
