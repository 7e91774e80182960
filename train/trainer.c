#include "trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corpus.h"
#include "fileio.h"
#include "matmul.h"
#include "timer.h"

/* Trains the tokenizer the config asks for on the data files (each a text of its own),
 * from counts of their words: the corpus is read once, in segments, on every thread. */
static int tokenizer_build(Trainer *t, Error *err)
{
    bool bpe = strcmp(t->cfg.tokenizer, "bpe") == 0;
    TextCounts *counts;
    if (corpus_count_words((const char *const *)t->cfg.data.items, t->cfg.data.n,
                           bpe ? TEXT_COUNTS_BPE : TEXT_COUNTS_CHAR, CORPUS_SEGMENT_BYTES,
                           compute_threads(), &counts, err) != 0)
        return -1;
    t->vocab_asked = bpe ? t->cfg.vocab_size : 0;
    int status = bpe ? tokenizer_train_bpe_counts(&t->tok, counts, t->cfg.vocab_size, err)
                     : tokenizer_train_char_counts(&t->tok, counts, err);
    text_counts_free(counts);
    if (status == 0)
        t->cfg.vocab_size = t->tok.n_vocab;
    return status;
}

/* The data files a new run names: at least one, each a text file. */
static int training_data_check(const Trainer *t, Error *err)
{
    if (t->cfg.data.n == 0)
        return error_set(err, "no training data: pass --data FILE... or set \"data\" in the "
                              "config");
    return corpus_check_text((const char *const *)t->cfg.data.items, t->cfg.data.n, err);
}

/* The optimizer and the batch sampler of a new run, once its model is there. */
static int trainer_start(Trainer *t, Error *err)
{
    OptimizerKind kind = strcmp(t->cfg.optimizer, "sgd") == 0 ? OPTIMIZER_SGD : OPTIMIZER_ADAMW;
    if (optimizer_init(&t->opt, kind, t->model.n_params, err) != 0)
        return -1;
    rng_seed(&t->rng, (uint64_t)t->cfg.seed);
    t->step = 0;
    return 0;
}

int trainer_setup_new(Trainer *t, Error *err)
{
    if (strcmp(t->cfg.tokenizer, "base") == 0)
        return error_set(err, "tokenizer 'base' is the tokenizer of a base model: pass --init "
                              "BASE.gguf to fine-tune one");
    if (training_data_check(t, err) != 0 || tokenizer_build(t, err) != 0)
        return -1;
    ModelConfig mc = config_model(&t->cfg);
    if (model_init(&t->model, &mc, err) != 0)
        return -1;
    model_init_params(&t->model, (uint64_t)t->cfg.seed);
    return trainer_start(t, err);
}

int trainer_setup_from_base(Trainer *t, const GgufFile *base, const char *path, Error *err)
{
    if (training_data_check(t, err) != 0)
        return -1;
    if (model_from_gguf(&t->model, base, err) != 0 || tokenizer_from_gguf(&t->tok, base, err) != 0)
        return error_prefix(err, "%s", path);
    if (t->tok.n_vocab > t->model.config.vocab_size)
        return error_set(err, "%s: the tokenizer has %d tokens, more than the model's %d "
                              "embeddings", path, t->tok.n_vocab, t->model.config.vocab_size);
    t->model.config.context = t->cfg.context; /* the base's, or cropped by --context */
    return trainer_start(t, err);
}

/* A job of one rank, for runs outside mpirun (and for bench and the tests). */
static const Dist SINGLE_RANK = {.rank = 0, .size = 1, .mpi = false};

static const Dist *trainer_dist(const Trainer *t)
{
    return t->dist ? t->dist : &SINGLE_RANK;
}

/* The token stream, from DIR/tokens.bin when it is valid, else tokenized into it. */
static int trainer_map_data(Trainer *t, Error *warning, Error *err)
{
    char cache[4096];
    snprintf(cache, sizeof cache, "%s/tokens.bin", t->dir);
    return data_load(&t->data, (const char *const *)t->cfg.data.items, t->cfg.data.n, &t->tok,
                     cache, warning, err);
}

/* Rank 0 makes (or finds) the token cache first, the other ranks then map the one it
 * wrote; and a check that the stream holds a window for each split. */
static int trainer_load_data(Trainer *t, Error *warning, Error *err)
{
    const Dist *d = trainer_dist(t);
    int status = dist_is_root(d) ? trainer_map_data(t, warning, err) : 0;
    if (dist_agree(d, status != 0) != 0) {
        if (!dist_is_root(d))
            err->msg[0] = '\0'; /* rank 0 reports */
        return -1;
    }
    if (!dist_is_root(d) && trainer_map_data(t, warning, err) != 0)
        return -1;
    int T = t->cfg.seq_len;
    if (data_window_count(&t->data, SPLIT_TRAIN, T) == 0 ||
        data_window_count(&t->data, SPLIT_VAL, T) == 0)
        return error_set(err, "the data has %zu token%s: too few for a training and a "
                              "validation window of seq_len %d + 1 (give more text or a smaller "
                              "--seq-len)",
                         t->data.n_tokens, plural_s((long long)t->data.n_tokens), T);
    return 0;
}

/* Levels of the gradient tree over k micro-batches: a range splits in two until one is
 * left, and each level beyond the first needs a buffer of its own. */
static int tree_levels(int k)
{
    int levels = 1;
    while ((1 << (levels - 1)) < k)
        levels++;
    return levels;
}

/* The buffers of the gradient tree (tree[0] is t->grads) and their views. */
static int gradient_tree_alloc(Trainer *t, int micro_batches, Error *err)
{
    t->tree_levels = tree_levels(micro_batches);
    t->tree = calloc((size_t)t->tree_levels, sizeof *t->tree);
    t->tree_views = calloc((size_t)t->tree_levels, sizeof *t->tree_views);
    if (!t->tree || !t->tree_views)
        return error_set(err, "out of memory for the gradient tree");
    t->tree[0] = t->grads;
    t->tree_views[0] = t->grad_views;
    for (int l = 1; l < t->tree_levels; l++) {
        t->tree[l] = malloc(t->model.n_params * sizeof(float));
        if (!t->tree[l])
            return error_set(err, "out of memory for %d gradient buffers", t->tree_levels);
        if (param_views_init(&t->tree_views[l], &t->model, t->tree[l], err) != 0)
            return -1;
    }
    return 0;
}

/* ZeRO stage 1: rank r keeps the moments of parameters [shards[r], shards[r + 1]). */
static int optimizer_shard_for_rank(Trainer *t, Error *err)
{
    const Dist *d = trainer_dist(t);
    t->shards = malloc((size_t)(d->size + 1) * sizeof *t->shards);
    if (!t->shards)
        return error_set(err, "out of memory");
    for (int r = 0; r <= d->size; r++)
        t->shards[r] = t->model.n_params * (size_t)r / (size_t)d->size;
    return optimizer_shard(&t->opt, t->shards[d->rank], t->shards[d->rank + 1], err);
}

int trainer_prepare(Trainer *t, Error *warning, Error *err)
{
    const TrainConfig *c = &t->cfg;
    const Dist *d = trainer_dist(t);
    if (c->grad_accum % d->size != 0)
        return error_set(err, "grad_accum %d must be a multiple of the %d ranks: each rank "
                              "takes an equal share of every step's micro-batches",
                         c->grad_accum, d->size);
    if (trainer_load_data(t, warning, err) != 0)
        return -1;
    size_t tokens = (size_t)c->batch_size * c->seq_len;
    t->grads = calloc(t->model.n_params, sizeof(float));
    t->inputs = malloc(tokens * sizeof(int));
    t->targets = malloc(tokens * sizeof(int));
    t->micro_losses = malloc((size_t)c->grad_accum * sizeof *t->micro_losses);
    t->starts = malloc((size_t)c->grad_accum * c->batch_size * sizeof *t->starts);
    if (d->size > 1)
        t->reduce_scratch = malloc(t->model.n_params * sizeof(float));
    if (!t->grads || !t->inputs || !t->targets || !t->micro_losses || !t->starts ||
        (d->size > 1 && !t->reduce_scratch))
        return error_set(err, "out of memory for gradients and batches");
    if (param_views_init(&t->grad_views, &t->model, t->grads, err) != 0 ||
        gradient_tree_alloc(t, c->grad_accum / d->size, err) != 0 ||
        activations_init(&t->acts, &t->model, c->batch_size, c->seq_len, err) != 0 ||
        grad_scratch_init(&t->scratch, &t->model, c->batch_size, c->seq_len, err) != 0)
        return -1;
    if (c->zero && d->size > 1 && optimizer_shard_for_rank(t, err) != 0)
        return -1;
    t->opt.beta1 = c->beta1;
    t->opt.beta2 = c->beta2;
    t->opt.weight_decay = c->weight_decay;
    governor_init(&t->governor);
    return 0;
}

int trainer_full_optimizer(Trainer *t, Optimizer *full, const Optimizer **out, Error *err)
{
    *out = &t->opt;
    if (!t->shards || t->opt.kind != OPTIMIZER_ADAMW)
        return 0;
    const Dist *d = trainer_dist(t);
    memset(full, 0, sizeof *full);
    /* only rank 0 writes checkpoints, so only it needs the whole state */
    if (dist_is_root(d) && optimizer_init(full, t->opt.kind, t->opt.n, err) != 0)
        return -1;
    if (dist_gather_slices_to_root(d, t->opt.m, full->m, t->shards, err) != 0 ||
        dist_gather_slices_to_root(d, t->opt.v, full->v, t->shards, err) != 0) {
        optimizer_free(full);
        return -1;
    }
    *out = full;
    return 0;
}

size_t trainer_memory_bytes(const Trainer *t)
{
    size_t n = t->model.n_params, moments = 2 * (t->opt.hi - t->opt.lo);
    size_t floats = n /* parameters */ + n * (size_t)t->tree_levels /* gradients */ +
                    (t->reduce_scratch ? n : 0) + (t->opt.kind == OPTIMIZER_ADAMW ? moments : 0) +
                    t->acts.n_floats + t->scratch.n_floats;
    return floats * sizeof(float);
}

void trainer_free(Trainer *t)
{
    for (int l = 1; l < t->tree_levels; l++) {
        free(t->tree[l]);
        param_views_free(&t->tree_views[l]);
    }
    free(t->tree);
    free(t->tree_views);
    free(t->reduce_scratch);
    free(t->shards);
    free(t->micro_losses);
    free(t->starts);
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

/* Where every micro-batch of this step reads its windows, from the RNG in order (every
 * rank draws them all, so the RNG stays the same everywhere). Micro-batch m of step s
 * without shuffling reads windows from ((s * grad_accum + m) * B) on, so a run with
 * --no-shuffle walks the training split in order, and so does a resumed one. */
static void trainer_window_starts(Trainer *t)
{
    const TrainConfig *c = &t->cfg;
    int B = c->batch_size;
    for (int micro = 0; micro < c->grad_accum; micro++) {
        uint64_t window = ((uint64_t)t->step * c->grad_accum + micro) * B;
        data_window_starts(&t->data, SPLIT_TRAIN, B, c->seq_len, c->shuffle ? &t->rng : NULL,
                           window, t->starts + (size_t)micro * B);
    }
}

/* Adds b into a (parameter-sized buffers), element by element. */
static void gradients_add(float *a, const float *b, size_t n)
{
#pragma omp parallel for simd schedule(static) if (n >= (1 << 16))
    for (size_t i = 0; i < n; i++)
        a[i] += b[i];
}

/* The gradient of micro-batches [lo, hi) into tree level `level`: one micro-batch is
 * written into the level's buffer; a longer range is split at its middle, and the halves'
 * gradients are added, left + right. */
static void tree_gradients(Trainer *t, int lo, int hi, int level)
{
    const TrainConfig *c = &t->cfg;
    int B = c->batch_size, T = c->seq_len;
    if (hi - lo > 1) {
        int mid = lo + (hi - lo) / 2;
        tree_gradients(t, lo, mid, level);
        tree_gradients(t, mid, hi, level + 1);
        gradients_add(t->tree[level], t->tree[level + 1], t->model.n_params);
        return;
    }
    data_batch_at(&t->data, SPLIT_TRAIN, B, T, t->starts + (size_t)lo * B, t->inputs, t->targets);
    model_forward(&t->model, &t->acts, t->inputs, B, T, 0);
    t->micro_losses[lo] = model_loss(&t->model, &t->acts, t->targets, B, T);
    model_backward(&t->model, &t->acts, &t->scratch, &t->tree_views[level], t->inputs,
                   t->targets, B, T, 1.0f / (float)c->grad_accum);
}

/* Gradients of one step into t->grads, on every rank; the mean loss over the
 * micro-batches into *loss. */
static int trainer_gradients(Trainer *t, float *loss, Error *err)
{
    const TrainConfig *c = &t->cfg;
    const Dist *d = trainer_dist(t);
    int per_rank = c->grad_accum / d->size, first = d->rank * per_rank;
    trainer_window_starts(t);
    tree_gradients(t, first, first + per_rank, 0);
    if (d->size > 1 &&
        dist_sum_floats(d, t->grads, t->reduce_scratch, t->model.n_params, err) != 0)
        return -1;
    double *all = malloc((size_t)c->grad_accum * sizeof *all);
    if (!all)
        return error_set(err, "out of memory");
    int status = dist_gather_doubles(d, t->micro_losses + first, per_rank, all, err);
    double sum = 0.0; /* in micro-batch order: the same mean for any number of ranks */
    for (int m = 0; m < c->grad_accum; m++)
        sum += all[m];
    free(all);
    *loss = (float)(sum / c->grad_accum);
    return status;
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
    governor_unit_begin(&t->governor);
    if (trainer_gradients(t, &stats->loss, err) != 0)
        return -1;
    stats->grad_norm = grad_global_norm(t->grads, t->model.n_params);
    if (!isfinite(stats->loss) || !isfinite(stats->grad_norm))
        return error_not_finite(t, stats, err);
    stats->lr = lr_schedule(t->step, c->lr, c->min_lr, c->warmup, c->decay_steps);
    optimizer_step(&t->opt, &t->model, t->grads, grad_clip_scale(stats->grad_norm, c->grad_clip),
                   stats->lr, t->step);
    /* with ZeRO each rank updated its shard: the ranks exchange them */
    if (t->shards && dist_share_slices(trainer_dist(t), t->model.params, t->shards, err) != 0)
        return -1;
    t->step++;
    stats->seconds = timer_seconds() - start;
    governor_unit_end(&t->governor, (double)c->batch_size * c->seq_len * c->grad_accum);
    return 0;
}
