/* Notebook 4: a training loop from quill's pieces.
 *
 * `quill train` is this loop with checkpoints, logging and validation around it
 * (train/trainer.c). Every step:
 *
 *   batch     B windows of T+1 tokens from the text: inputs are the first T, targets the
 *             last T (each target is the token after its input)       train/data.h
 *   forward   logits (B, T, V) for every position                      src/model.h
 *   loss      mean cross-entropy: -ln p(target), averaged
 *   backward  the gradient of the loss for every parameter (written, not added to)
 *   clip      scale the gradient down when its global norm exceeds 1  train/optimizer.h
 *   lr        the learning rate of this step, from the schedule
 *   update    AdamW: each parameter moves against its (normalised) gradient
 *
 * The schedule (nanoGPT's get_lr): a linear warmup, then a cosine decay to min_lr. Warmup
 * exists because AdamW's second-moment estimate starts at 0 and is poor for the first
 * steps, and a fresh model's gradients are large: full-size steps then can throw the
 * weights somewhere the loss does not come back from. The decay lets the last steps settle
 * into a minimum instead of bouncing around it.
 *
 * The model knows nothing at first: its output layer starts at zero, so every token gets
 * probability 1/V and the first loss is exactly ln V. Here a tiny model learns a short
 * text by heart in a fraction of a second.
 *
 * Build and run:  make notebooks   (or: build/release/notebooks/04_training_loop) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../generate/chart.h"
#include "../train/data.h"
#include "../train/optimizer.h"
#include "model.h"
#include "tokenizer.h"

static const char TEXT[] =
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was "
    "the age of foolishness, it was the epoch of belief, it was the epoch of incredulity, it "
    "was the season of Light, it was the season of Darkness, it was the spring of hope, it "
    "was the winter of despair.";

enum { STEPS = 120, WARMUP = 10, B = 8, T = 32, LOG_EVERY = 10 };
static const float LR = 1e-2f, MIN_LR = 1e-3f, CLIP = 1.0f;

static void check(int status, const Error *err)
{
    if (status != 0) {
        fprintf(stderr, "%s\n", err->msg);
        exit(1);
    }
}

int main(void)
{
    Error err;
    /* the text as ids, one token per character */
    Tokenizer tok = {0};
    int *ids;
    size_t n_ids;
    check(tokenizer_train_char(&tok, TEXT, strlen(TEXT), &err), &err);
    check(tokenizer_encode(&tok, TEXT, strlen(TEXT), true, &ids, &n_ids, &err), &err);
    TokenData data = {.ids = ids, .token_bytes = sizeof *ids, .n_tokens = n_ids,
                      .n_train = n_ids, .vocab_size = (uint32_t)tok.n_vocab};

    /* the model, its activations, its gradients (same layout as the parameters) and AdamW */
    ModelConfig c = {.n_layers = 2, .dim = 32, .n_heads = 2, .n_kv_heads = 2, .ffn_dim = 96,
                     .vocab_size = tok.n_vocab, .context = T, .rope_base = 10000.0f,
                     .norm_eps = 1e-5f};
    Model m;
    Activations a;
    GradScratch scratch;
    ParamViews grad_views;
    Optimizer opt;
    check(model_init(&m, &c, &err), &err);
    model_init_params(&m, 1337);
    float *grads = calloc(m.n_params, sizeof *grads);
    check(activations_init(&a, &m, B, T, &err) || grad_scratch_init(&scratch, &m, B, T, &err) ||
              param_views_init(&grad_views, &m, grads, &err) ||
              optimizer_init(&opt, OPTIMIZER_ADAMW, m.n_params, &err),
          &err);
    opt.weight_decay = 0.1f;
    printf("%zu characters, vocabulary V = %d, %zu parameters; ln V = %.4f\n\n", n_ids,
           tok.n_vocab, m.n_params, log(tok.n_vocab));

    Rng rng;
    rng_seed(&rng, 1);
    int inputs[B * T], targets[B * T];
    float first_loss = 0.0f, loss = 0.0f;
    printf("step   loss    learning rate (bar: share of the peak %g)\n", LR);
    for (int step = 0; step < STEPS; step++) {
        data_batch(&data, SPLIT_TRAIN, B, T, &rng, 0, inputs, targets);
        model_forward(&m, &a, inputs, B, T, 0);
        loss = model_loss(&m, &a, targets, B, T);
        model_backward(&m, &a, &scratch, &grad_views, inputs, targets, B, T, 1.0f);
        float clip_scale = grad_clip_scale(grad_global_norm(grads, m.n_params), CLIP);
        float lr = lr_schedule(step, LR, MIN_LR, WARMUP, STEPS);
        optimizer_step(&opt, &m, grads, clip_scale, lr, step);
        if (step == 0)
            first_loss = loss;
        if (step % LOG_EVERY == 0 || step == STEPS - 1) {
            char label[32];
            snprintf(label, sizeof label, "%4d %7.4f  %.2e", step, loss, lr);
            chart_bar(stdout, label, lr, LR, 30);
        }
    }
    printf("\nloss: first %.4f (ln V = %.4f), last %.4f\n\n", first_loss, log(tok.n_vocab), loss);

    printf("The loss falls from ln V (a uniform guess) as the model learns which character\n"
           "follows which; the bar shows the warmup's ramp and the cosine's slow fall.\n"
           "Try this: set WARMUP to 0 and LR to 5e-2: the loss drops fast at first, then\n"
           "stalls near 2 and ends about twice as high: steps that large keep the weights\n"
           "bouncing around the minimum instead of settling into it.\n");
    optimizer_free(&opt);
    param_views_free(&grad_views);
    grad_scratch_free(&scratch);
    activations_free(&a);
    free(grads);
    model_free(&m);
    free(ids);
    tokenizer_free(&tok);
    return 0;
}
