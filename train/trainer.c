#include "trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fileio.h"
#include "timer.h"

/* Trains the tokenizer the config asks for on all data files, concatenated. */
static int tokenizer_build(Trainer *t, Error *err)
{
    size_t total = 0;
    char *text = NULL;
    for (int i = 0; i < t->cfg.data.n; i++) {
        char *part;
        size_t len;
        if (file_read_all(t->cfg.data.items[i], &part, &len, err) != 0) {
            free(text);
            return -1;
        }
        char *grown = realloc(text, total + len + 1);
        if (!grown) {
            free(part);
            free(text);
            return error_set(err, "out of memory reading the data");
        }
        text = grown;
        memcpy(text + total, part, len + 1);
        total += len;
        free(part);
    }
    int status = strcmp(t->cfg.tokenizer, "bpe") == 0
                     ? tokenizer_train_bpe(&t->tok, text, total, t->cfg.vocab_size, err)
                     : tokenizer_train_char(&t->tok, text, total, err);
    free(text);
    if (status == 0)
        t->cfg.vocab_size = t->tok.n_vocab;
    return status;
}

int trainer_setup_new(Trainer *t, Error *err)
{
    if (t->cfg.data.n == 0)
        return error_set(err, "no training data: pass --data FILE... or set \"data\" in the "
                              "config");
    if (tokenizer_build(t, err) != 0)
        return -1;
    ModelConfig mc = config_model(&t->cfg);
    if (model_init(&t->model, &mc, err) != 0)
        return -1;
    model_init_params(&t->model, (uint64_t)t->cfg.seed);
    OptimizerKind kind = strcmp(t->cfg.optimizer, "sgd") == 0 ? OPTIMIZER_SGD : OPTIMIZER_ADAMW;
    if (optimizer_init(&t->opt, kind, t->model.n_params, err) != 0)
        return -1;
    rng_seed(&t->rng, (uint64_t)t->cfg.seed);
    t->step = 0;
    return 0;
}

/* The token stream, from DIR/tokens.bin when it is valid (tokenized otherwise: nothing is
 * written here), and a check that it holds a window for each split. */
static int trainer_load_data(Trainer *t, Error *warning, Error *err)
{
    char cache[4096];
    snprintf(cache, sizeof cache, "%s/tokens.bin", t->dir);
    if (data_load(&t->data, (const char *const *)t->cfg.data.items, t->cfg.data.n, &t->tok,
                  cache, warning, err) != 0)
        return -1;
    int T = t->cfg.seq_len;
    if (data_window_count(&t->data, SPLIT_TRAIN, T) == 0 ||
        data_window_count(&t->data, SPLIT_VAL, T) == 0)
        return error_set(err, "the data has %zu tokens: too few for a training and a validation "
                              "window of seq_len %d + 1 (give more text or a smaller --seq-len)",
                         t->data.n_tokens, T);
    return 0;
}

int trainer_prepare(Trainer *t, Error *warning, Error *err)
{
    const TrainConfig *c = &t->cfg;
    if (trainer_load_data(t, warning, err) != 0)
        return -1;
    size_t tokens = (size_t)c->batch_size * c->seq_len;
    t->grads = calloc(t->model.n_params, sizeof(float));
    t->inputs = malloc(tokens * sizeof(int));
    t->targets = malloc(tokens * sizeof(int));
    if (!t->grads || !t->inputs || !t->targets)
        return error_set(err, "out of memory for gradients and batches");
    if (param_views_init(&t->grad_views, &t->model, t->grads, err) != 0 ||
        activations_init(&t->acts, &t->model, c->batch_size, c->seq_len, err) != 0 ||
        grad_scratch_init(&t->scratch, &t->model, c->batch_size, c->seq_len, err) != 0)
        return -1;
    t->opt.beta1 = c->beta1;
    t->opt.beta2 = c->beta2;
    t->opt.weight_decay = c->weight_decay;
    return 0;
}

int trainer_save_data_cache(const Trainer *t, Error *err)
{
    char cache[4096];
    snprintf(cache, sizeof cache, "%s/tokens.bin", t->dir);
    return t->data.from_cache ? 0 : data_cache_save(&t->data, cache, err);
}

void trainer_free(Trainer *t)
{
    free(t->inputs);
    free(t->targets);
    data_free(&t->data);
    grad_scratch_free(&t->scratch);
    activations_free(&t->acts);
    param_views_free(&t->grad_views);
    free(t->grads);
    optimizer_free(&t->opt);
    tokenizer_free(&t->tok);
    model_free(&t->model);
    config_free(&t->cfg);
}

/* Gradients of one step into t->grads; returns the mean loss over the micro-batches.
 * Micro-batch m of step s reads windows from ((s * grad_accum + m) * B) on, so a run with
 * --no-shuffle walks the training split in order, and so does a resumed one. */
static float trainer_gradients(Trainer *t)
{
    const TrainConfig *c = &t->cfg;
    int B = c->batch_size, T = c->seq_len;
    memset(t->grads, 0, t->model.n_params * sizeof(float));
    double loss = 0.0;
    for (int micro = 0; micro < c->grad_accum; micro++) {
        uint64_t window = ((uint64_t)t->step * c->grad_accum + micro) * B;
        data_batch(&t->data, SPLIT_TRAIN, B, T, c->shuffle ? &t->rng : NULL, window, t->inputs,
                   t->targets);
        model_forward(&t->model, &t->acts, t->inputs, B, T, 0);
        loss += model_loss(&t->model, &t->acts, t->targets, B, T);
        model_backward(&t->model, &t->acts, &t->scratch, &t->grad_views, t->inputs, t->targets,
                       B, T, 1.0f / (float)c->grad_accum);
    }
    return (float)(loss / c->grad_accum);
}

/* Why a step produced a non-finite loss or gradient. Parameters that are already NaN or
 * infinite mean the model was damaged before this step (a checkpoint edited or corrupted on
 * disk, say): no learning rate would help, and the message says so. Otherwise the step
 * itself overflowed: the classic divergence. */
static int error_not_finite(const Trainer *t, const StepStats *stats, Error *err)
{
    size_t element;
    int bad = model_find_nonfinite(&t->model, t->model.params, &element);
    if (bad >= 0)
        return error_set(err, "step %d: parameter %zu of tensor '%s' is %g before the update: "
                              "the model was damaged before this step, not by the learning "
                              "rate; the last checkpoint in %s is kept",
                         t->step + 1, element, t->model.tensors[bad].name,
                         t->model.tensors[bad].data[element], t->dir);
    return error_set(err, "step %d: the loss is %g and the gradient norm %g: training "
                          "diverged and stops here; the last checkpoint in %s is kept "
                          "(try a lower --lr, a longer --warmup, or --grad-clip 1)",
                     t->step + 1, stats->loss, stats->grad_norm, t->dir);
}

int trainer_step(Trainer *t, StepStats *stats, Error *err)
{
    const TrainConfig *c = &t->cfg;
    double start = timer_seconds();
    stats->loss = trainer_gradients(t);
    stats->grad_norm = grad_global_norm(t->grads, t->model.n_params);
    if (!isfinite(stats->loss) || !isfinite(stats->grad_norm))
        return error_not_finite(t, stats, err);
    stats->lr = lr_schedule(t->step, c->lr, c->min_lr, c->warmup, c->decay_steps);
    optimizer_step(&t->opt, &t->model, t->grads, grad_clip_scale(stats->grad_norm, c->grad_clip),
                   stats->lr, t->step);
    t->step++;
    stats->seconds = timer_seconds() - start;
    return 0;
}
