/* quill finetune: a LoRA adapter trained on a frozen base model (src/lora_train.h).
 *
 *   setup    the base GGUF is mapped as for inference (its weights stay in their stored
 *            type, read where they lie), the text is tokenized with the base's own
 *            tokenizer into DIR/tokens.bin (train/data.h), or chat data (.jsonl) in the
 *            base's chat template into memory, with the mask of the assistant's tokens
 *            that the loss is taken on (train/chat_data.h), and the adapter starts with A
 *            random and B zero; a resumed run reads the adapter, the AdamW moments, the
 *            step and the sampler's RNG from DIR/finetune_state
 *   steps    grad_accum micro-batches of forward (the stored-type kernels plus the
 *            adapter's term), loss and lora_train_backward, each scaled by 1/grad_accum;
 *            then the global gradient norm, clipping, the learning-rate schedule and an
 *            AdamW update of A and B: the trainer's pieces (train/optimizer.h)
 *   along the way
 *            progress and DIR/log.jsonl every step, validation every eval_every steps
 *            (and once before the first step: the base model's own loss), a checkpoint
 *            every save_every steps and at the end
 *   the end  the whole validation split, and DIR/loss.svg
 *   Ctrl-C   finishes the current step, saves a checkpoint and stops with status 130.
 *
 * A checkpoint is two files, each written atomically, the state first:
 *   finetune_state  for --resume: the adapter (F32), the moments (quill.adamw.m / .v),
 *                   quill.step, quill.rng_state, quill.config (the run's keys, JSON),
 *                   quill.finetune.base (the base model's path), with checksums;
 *   adapter.gguf    llama.cpp's LoRA adapter: quill generate --lora, llama-cli --lora. */
/* realpath: the base model's absolute path, which --resume finds from any directory */
#define _DEFAULT_SOURCE

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chat_data.h"
#include "checkpoint.h"
#include "config.h"
#include "data.h"
#include "evaluate.h"
#include "fileio.h"
#include "gguf.h"
#include "governor.h"
#include "loader.h"
#include "lora_train.h"
#include "matmul.h"
#include "optimizer.h"
#include "plot.h"
#include "progress.h"
#include "timer.h"
#include "train.h"

typedef struct {
    const char *out_dir, *resume_dir;
    bool force;
    int rank;            /* 0 (only while parsing a resumed run's flags): not given */
    float alpha;         /* 0: not given */
    const char *targets; /* NULL: not given */
    bool loss_on_all;    /* chat data: the loss on every token, not only the assistant's */
    float dropout;       /* --lora-dropout; -1 (only while parsing a resumed run's flags):
                            not given */
} FinetuneArgs;

typedef struct {
    TrainConfig cfg;
    const char *dir;
    char base_path[4096];
    bool loss_on_all;
    float dropout;
    Model model;
    Tokenizer tok;
    LoraTrain lora;
    LoraSet set;
    Optimizer opt;
    float *grads;
    Activations acts;
    GradScratch scratch;
    TokenData data;
    Rng rng;
    int step;
    ThreadGovernor governor; /* how many threads a step runs on (governor.h) */
    int *inputs, *targets;   /* (B, T) */
    size_t *starts;        /* (B) */
} Finetune;

static volatile sig_atomic_t stop_requested = 0;

static void on_interrupt(int signo)
{
    (void)signo;
    stop_requested = 1;
}

/* ---- command line ------------------------------------------------------------------- */

static const char FINETUNE_USAGE[] =
    "usage: quill finetune BASE.gguf --data FILE... --out DIR [options]\n"
    "       quill finetune --resume DIR [--steps N] [options]\n\n"
    "Trains a LoRA adapter on a frozen base model (any type quill runs: F32, F16, Q8_0,\n"
    "Q4_K ...) and writes DIR/adapter.gguf, llama.cpp's LoRA format: use it with\n"
    "quill generate BASE.gguf --lora DIR/adapter.gguf, or llama-cli --lora. Also\n"
    "DIR/finetune_state (for --resume), DIR/config.json, DIR/log.jsonl and DIR/loss.svg.\n"
    "The text is tokenized with the base model's tokenizer. A FILE.jsonl is chat data, one\n"
    "conversation a line, {\"messages\": [{\"role\": ..., \"content\": ...}]}, in the base\n"
    "model's chat template, the loss taken on the assistant's tokens only.\n";

/* The keys of quill train that apply to a fine-tune (the others describe a model to build). */
static const char *const RUN_KEYS[] = {
    "data", "shuffle", "steps", "batch-size", "seq-len", "grad-accum", "lr", "min-lr",
    "warmup", "decay-steps", "weight-decay", "beta1", "beta2", "grad-clip", "seed",
    "eval-every", "eval-batches", "save-every", "log-every", "threads",
};
enum { N_RUN_KEYS = sizeof RUN_KEYS / sizeof *RUN_KEYS, OWN_FLAGS = 8 };

typedef struct {
    Flag flags[OWN_FLAGS + N_RUN_KEYS];
    CommandSpec spec;
} FinetuneCommandLine;

static void finetune_command_line(FinetuneCommandLine *cl, FinetuneArgs *args, TrainConfig *cfg)
{
    const Flag own[OWN_FLAGS] = {
        {"out", FLAG_STRING, &args->out_dir, 0, 0, "run directory (created if needed)"},
        {"resume", FLAG_STRING, &args->resume_dir, 0, 0, "continue the run in DIR up to --steps"},
        {"force", FLAG_SWITCH, &args->force, 0, 0,
         "start a new run in a DIR that already holds one"},
        {"lora-rank", FLAG_INT, &args->rank, 1, 4096,
         "rank r of the factors A (r, in), B (out, r)"},
        {"lora-alpha", FLAG_FLOAT, &args->alpha, 0, 1e6,
         "the adapter's term B A x is scaled by alpha / rank", .above_min = true},
        {"lora-targets", FLAG_STRING, &args->targets, 0, 0,
         "projections to adapt: any of q,k,v,o,gate,up,down"},
        {"loss-on-all", FLAG_SWITCH, &args->loss_on_all, 0, 0,
         "chat data (.jsonl): take the loss on every token, not only the assistant's"},
        {"lora-dropout", FLAG_FLOAT, &args->dropout, 0, 0.99,
         "dropout probability on each adapter's input, in training"},
    };
    memcpy(cl->flags, own, sizeof own);
    Flag all[CONFIG_N_KEYS];
    int n_all = config_flags(cfg, all), n = OWN_FLAGS;
    for (int i = 0; i < n_all; i++)
        for (int k = 0; k < N_RUN_KEYS; k++)
            if (strcmp(all[i].name, RUN_KEYS[k]) == 0)
                cl->flags[n++] = all[i];
    cl->spec = (CommandSpec){.usage = FINETUNE_USAGE, .flags = cl->flags, .n_flags = n,
                             .max_positional = 1};
}

static int finetune_parse(int argc, char **argv, FinetuneArgs *args, TrainConfig *cfg,
                          const char **base, Error *err)
{
    FinetuneCommandLine cl;
    finetune_command_line(&cl, args, cfg);
    int n_positional = 0;
    const char *positional[1] = {NULL};
    int status = cli_parse_command(&cl.spec, argc, argv, positional, &n_positional, stdout, err);
    *base = n_positional > 0 ? positional[0] : NULL;
    return status;
}

/* A fine-tune's defaults where quill train's would not fit: fewer steps and a short warmup
 * (a small change to a trained model), no weight decay (peft's and Hugging Face's
 * default: decay would pull the adapter towards the base, which B = 0 already is). */
static void finetune_defaults(TrainConfig *c)
{
    c->steps = 200;
    c->batch_size = 4;
    c->warmup = 10;
    c->weight_decay = 0.0f;
    c->eval_every = 50;
    c->lr = 1e-3f;
    c->min_lr = 1e-4f;
}

/* ---- setup -------------------------------------------------------------------------- */

static void path_in(char *out, size_t cap, const char *dir, const char *name)
{
    snprintf(out, cap, "%s/%s", dir, name);
}

/* The base model, mapped; the resolved config checked against it (seq_len within its
 * context, which is what seq_len 0 means). */
static int base_load(Finetune *f, Error *err)
{
    if (model_file_load(f->base_path, &f->model, &f->tok, err) != 0)
        return -1;
    f->cfg.context = f->model.config.context;
    return config_resolve(&f->cfg, err);
}

/* The buffers of a run: activations and gradient scratch for B x T, the adapter's forward
 * set, its gradient, the batches. */
static int finetune_buffers(Finetune *f, Error *err)
{
    int B = f->cfg.batch_size, T = f->cfg.seq_len;
    LoraUse use = {&f->lora.adapter, 1.0f};
    if (activations_init(&f->acts, &f->model, B, T, err) != 0 ||
        grad_scratch_init(&f->scratch, &f->model, B, T, err) != 0 ||
        lora_set_init(&f->set, &use, 1, B * T, err) != 0)
        return -1;
    f->acts.lora = &f->set;
    if (f->dropout > 0.0f) {
        if (lora_set_dropout(&f->set, f->dropout, err) != 0)
            return -1;
        f->lora.dropout = &f->set;
    }
    f->grads = calloc(f->lora.n_params, sizeof *f->grads);
    f->inputs = malloc((size_t)B * T * sizeof *f->inputs);
    f->targets = malloc((size_t)B * T * sizeof *f->targets);
    f->starts = malloc((size_t)B * sizeof *f->starts);
    if (!f->grads || !f->inputs || !f->targets || !f->starts)
        return error_set(err, "out of memory for gradients and batches");
    f->opt.beta1 = f->cfg.beta1;
    f->opt.beta2 = f->cfg.beta2;
    f->opt.weight_decay = f->cfg.weight_decay;
    return 0;
}

/* Chat data: every --data file a .jsonl of conversations, in the base's chat template,
 * into a stream held in memory (train/chat_data.h). */
static int chat_data_prepare(Finetune *f, Error *err)
{
    ChatFamily family = chat_family_from_gguf(f->model.file);
    if (family == CHAT_UNKNOWN)
        return error_set(err, "%s has no chat template that quill knows (tokenizer.chat_template):"
                              " chat data (.jsonl) needs one; give plain text instead",
                         f->base_path);
    ChatTokens tokens = {0};
    for (int i = 0; i < f->cfg.data.n; i++) {
        const char *path = f->cfg.data.items[i];
        if (!chat_data_path(path) ||
            chat_tokens_load(&tokens, path, family, &f->tok, f->loss_on_all, err) != 0) {
            chat_tokens_free(&tokens);
            return chat_data_path(path) ? -1 : error_set(err, "--data %s: not .jsonl, beside "
                                                              "chat data (.jsonl): give one kind",
                                                         path);
        }
    }
    data_from_memory(&f->data, tokens.ids, tokens.counted, tokens.n, (uint32_t)f->tok.n_vocab);
    return 0;
}

static int text_data_prepare(Finetune *f, Error *err)
{
    char cache[4096];
    Error warning = {{0}};
    path_in(cache, sizeof cache, f->dir, "tokens.bin");
    if (data_load(&f->data, (const char *const *)f->cfg.data.items, f->cfg.data.n, &f->tok, cache,
                  &warning, err) != 0)
        return -1;
    if (warning.msg[0])
        fprintf(stderr, "quill: warning: %s\n", warning.msg);
    return 0;
}

static int data_prepare(Finetune *f, Error *err)
{
    bool chat = false;
    for (int i = 0; i < f->cfg.data.n; i++)
        chat = chat || chat_data_path(f->cfg.data.items[i]);
    if ((chat ? chat_data_prepare(f, err) : text_data_prepare(f, err)) != 0)
        return -1;
    int T = f->cfg.seq_len;
    if (data_window_count(&f->data, SPLIT_TRAIN, T) == 0 ||
        data_window_count(&f->data, SPLIT_VAL, T) == 0)
        return error_set(err, "the data has %zu token%s: too few for a training and a "
                              "validation window of seq_len %d + 1 (give more text or a smaller "
                              "--seq-len)",
                         f->data.n_tokens, plural_s((long long)f->data.n_tokens), T);
    return 0;
}

static int setup_new(Finetune *f, const FinetuneArgs *args, const char *base, Error *err)
{
    if (!base)
        return error_set(err, "no base model: quill finetune BASE.gguf --data FILE --out DIR");
    if (f->cfg.data.n == 0)
        return error_set(err, "no training data: pass --data FILE...");
    for (int i = 0; i < f->cfg.data.n; i++)
        if (access(f->cfg.data.items[i], R_OK) != 0)
            return error_set(err, "--data %s: no such file (or it cannot be read)",
                             f->cfg.data.items[i]);
    char state[4096];
    path_in(state, sizeof state, f->dir, "finetune_state");
    if (access(state, F_OK) == 0 && !args->force)
        return error_set(err, "%s already holds a fine-tuning run: continue it with --resume "
                              "%s, or pass --force to start over",
                         f->dir, f->dir);
    unsigned targets;
    if (lora_targets_parse(args->targets, &targets, err) != 0)
        return -1;
    if (!realpath(base, f->base_path))
        return error_set(err, "%s: no such model file", base);
    if (config_absolute_data_paths(&f->cfg, err) != 0 || base_load(f, err) != 0)
        return -1;
    compute_set_threads(f->cfg.threads);
    int rows = f->cfg.batch_size * f->cfg.seq_len;
    if (lora_train_init(&f->lora, &f->model, args->rank, args->alpha, targets,
                        (uint64_t)f->cfg.seed, rows, err) != 0 ||
        optimizer_init(&f->opt, OPTIMIZER_ADAMW, f->lora.n_params, err) != 0)
        return -1;
    rng_seed(&f->rng, (uint64_t)f->cfg.seed + 1);
    f->loss_on_all = args->loss_on_all;
    f->dropout = args->dropout;
    if (dir_create_all(f->dir, err) != 0)
        return -1;
    return 0;
}

/* The adapter's own keys, where the command line gives them, must be those of the run
 * being resumed: its tensors have their shapes. `given`: the flags parsed onto zeros. */
static int check_same_adapter(const FinetuneArgs *given, const char *dir, int rank, float alpha,
                              const char *targets, bool loss_on_all, float dropout,
                              Error *err)
{
    unsigned asked, saved;
    if (given->rank && given->rank != rank)
        return error_set(err, "--lora-rank %d: the run in %s has rank %d, which a resumed run "
                              "keeps", given->rank, dir, rank);
    if (given->alpha > 0 && given->alpha != alpha)
        return error_set(err, "--lora-alpha %g: the run in %s has alpha %g, which a resumed "
                              "run keeps", given->alpha, dir, alpha);
    if (given->targets && (lora_targets_parse(given->targets, &asked, err) != 0 ||
                           lora_targets_parse(targets, &saved, err) != 0))
        return -1;
    if (given->targets && asked != saved)
        return error_set(err, "--lora-targets %s: the run in %s adapts %s, which a resumed "
                              "run keeps", given->targets, dir, targets);
    if (given->dropout >= 0.0f && given->dropout != dropout)
        return error_set(err, "--lora-dropout %g: the run in %s has dropout %g, which a "
                              "resumed run keeps", given->dropout, dir, dropout);
    if (given->loss_on_all && !loss_on_all)
        return error_set(err, "--loss-on-all: the run in %s takes the loss on the assistant's "
                              "tokens only, which a resumed run keeps", dir);
    return 0;
}

/* Reads finetune_state: the run's keys (then the flags given now on top), the base, the
 * adapter, the moments, the step and the RNG. */
static int resume_read(Finetune *f, int argc, char **argv, const GgufFile *g, Error *err)
{
    TrainProgressState state = {0};
    const char *base, *targets;
    int32_t rank;
    float alpha;
    if (gguf_get_str(g, "quill.finetune.base", &base, err) != 0 ||
        gguf_get_str(g, "quill.finetune.targets", &targets, err) != 0 ||
        gguf_get_i32(g, "quill.finetune.rank", &rank, err) != 0 ||
        gguf_get_f32(g, "adapter.lora.alpha", &alpha, err) != 0 ||
        (gguf_find_kv(g, "quill.finetune.loss_on_all") && /* absent: a text run */
         gguf_get_bool(g, "quill.finetune.loss_on_all", &f->loss_on_all, err) != 0) ||
        (gguf_find_kv(g, "quill.finetune.lora_dropout") && /* absent: no dropout */
         gguf_get_f32(g, "quill.finetune.lora_dropout", &f->dropout, err) != 0) ||
        checkpoint_read_progress(g, &state, err) != 0)
        return -1;
    int status = config_apply_json(&f->cfg, state.config_json, strlen(state.config_json),
                                   "finetune_state config", err);
    free(state.config_json);
    FinetuneArgs given = {.dropout = -1.0f};
    const char *no_base;
    unsigned mask;
    if (status != 0 || finetune_parse(argc, argv, &given, &f->cfg, &no_base, err) != 0 ||
        check_same_adapter(&given, f->dir, rank, alpha, targets, f->loss_on_all, f->dropout,
                           err) != 0 ||
        lora_targets_parse(targets, &mask, err) != 0)
        return -1;
    snprintf(f->base_path, sizeof f->base_path, "%s", base);
    if (config_absolute_data_paths(&f->cfg, err) != 0 || base_load(f, err) != 0)
        return -1;
    compute_set_threads(f->cfg.threads);
    f->step = state.step;
    f->rng.state = state.rng_state;
    if (lora_train_init(&f->lora, &f->model, rank, alpha, mask, 0,
                        f->cfg.batch_size * f->cfg.seq_len, err) != 0 ||
        lora_train_read_tensors(&f->lora, g, err) != 0 ||
        checkpoint_read_optimizer(g, &f->opt, f->lora.n_params, err) != 0)
        return -1;
    if (f->cfg.steps < f->step)
        return error_set(err, "the run in %s is already at step %d, past --steps %d: nothing "
                              "was changed (pass --steps above %d to train further)",
                         f->dir, f->step, f->cfg.steps, f->step);
    return 0;
}

static int setup_resume(Finetune *f, int argc, char **argv, Error *err)
{
    char path[4096];
    path_in(path, sizeof path, f->dir, "finetune_state");
    if (access(path, F_OK) != 0)
        return error_set(err, "%s: no finetune_state to resume from", f->dir);
    GgufFile *g;
    if (checkpoint_open_verified(path, &g, err) != 0)
        return -1;
    config_free(&f->cfg);
    config_init(&f->cfg);
    int status = resume_read(f, argc, argv, g, err);
    gguf_close(g);
    return status == 0 ? 0 : error_prefix(err, "%s", path);
}

/* ---- checkpoints -------------------------------------------------------------------- */

static int write_state(const Finetune *f, const char *path, Error *err)
{
    char *json = config_to_json(&f->cfg), targets[64];
    GgufWriter *w = gguf_writer_new();
    if (!json || !w) {
        free(json);
        gguf_writer_free(w);
        return error_set(err, "%s: out of memory", path);
    }
    lora_targets_format(f->lora.targets, targets, sizeof targets);
    lora_train_add_tensors(&f->lora, w);
    gguf_writer_add_str(w, "quill.finetune.base", f->base_path);
    gguf_writer_add_str(w, "quill.finetune.targets", targets);
    gguf_writer_add_i32(w, "quill.finetune.rank", f->lora.rank);
    gguf_writer_add_bool(w, "quill.finetune.loss_on_all", f->loss_on_all);
    gguf_writer_add_f32(w, "quill.finetune.lora_dropout", f->dropout);
    gguf_writer_add_u32(w, "quill.step", (uint32_t)f->step);
    TrainProgressState state = {.step = f->step, .rng_state = f->rng.state, .config_json = json};
    checkpoint_add_progress(w, &f->opt, &state);
    int status = checkpoint_write_sealed(w, path, err);
    gguf_writer_free(w);
    free(json);
    return status;
}

static int finetune_save(const Finetune *f, Error *err)
{
    char path[4096];
    path_in(path, sizeof path, f->dir, "finetune_state");
    if (write_state(f, path, err) != 0)
        return -1;
    path_in(path, sizeof path, f->dir, "adapter.gguf");
    return lora_train_write_adapter(&f->lora, path, err);
}

/* ---- the loop ----------------------------------------------------------------------- */

/* The gradient of one step into f->grads (cleared first: backward adds), micro-batch by
 * micro-batch in order; the mean loss of the micro-batches. Micro-batch m of step s reads
 * its windows as quill train's do: from the RNG, or (--no-shuffle) consecutively from
 * window (s * grad_accum + m) * B. */
static float finetune_gradients(Finetune *f)
{
    const TrainConfig *c = &f->cfg;
    int B = c->batch_size, T = c->seq_len;
    memset(f->grads, 0, f->lora.n_params * sizeof *f->grads);
    double sum = 0.0;
    for (int micro = 0; micro < c->grad_accum; micro++) {
        uint64_t window = ((uint64_t)f->step * c->grad_accum + micro) * B;
        data_window_starts(&f->data, SPLIT_TRAIN, B, T, c->shuffle ? &f->rng : NULL, window,
                           f->starts);
        data_batch_at(&f->data, SPLIT_TRAIN, B, T, f->starts, f->inputs, f->targets);
        /* dropout's masks: new for each micro-batch, a function of the seed and the step,
         * so that a resumed run draws the same ones */
        f->set.dropout = f->dropout;
        f->set.dropout_seed = rng_mix((uint64_t)c->seed ^ rng_mix(window));
        model_forward(&f->model, &f->acts, f->inputs, B, T, 0);
        sum += model_loss(&f->model, &f->acts, f->targets, B, T);
        lora_train_backward(&f->lora, &f->model, &f->acts, &f->scratch, f->grads, f->targets, B,
                            T, 1.0f / (float)c->grad_accum);
    }
    f->set.dropout = 0.0f; /* evaluation sees the whole adapter */
    return (float)(sum / c->grad_accum);
}

static int finetune_step(Finetune *f, Progress *progress, Error *err)
{
    const TrainConfig *c = &f->cfg;
    double start = timer_seconds();
    governor_unit_begin(&f->governor);
    float loss = finetune_gradients(f);
    double norm = grad_global_norm(f->grads, f->lora.n_params);
    if (!isfinite(loss) || !isfinite(norm))
        return error_set(err, "step %d: the loss is %g and the gradient norm %g: training "
                              "diverged and stops here; the last checkpoint in %s is kept (try "
                              "a lower --lr or a longer --warmup)",
                         f->step + 1, loss, norm, f->dir);
    float lr = lr_schedule(f->step, c->lr, c->min_lr, c->warmup, c->decay_steps);
    optimizer_step_flat(&f->opt, f->lora.params, f->grads, grad_clip_scale(norm, c->grad_clip),
                        lr, f->step);
    f->step++;
    double seconds = timer_seconds() - start;
    double tokens = (double)c->batch_size * c->seq_len * c->grad_accum;
    governor_unit_end(&f->governor, tokens);
    progress_step(progress, f->step, loss, lr, (float)norm, tokens / seconds, seconds);
    return 0;
}

static int finetune_evaluate(Finetune *f, Progress *progress, bool whole_split, Error *err)
{
    double loss;
    size_t n_tokens;
    if (eval_mean_loss(&f->model, &f->acts, &f->data, SPLIT_VAL, f->cfg.batch_size,
                       f->cfg.seq_len, whole_split ? 0 : f->cfg.eval_batches, &loss, &n_tokens,
                       err) != 0)
        return -1;
    char what[64] = "val";
    if (whole_split)
        snprintf(what, sizeof what, "val (whole split, %zu tokens)", n_tokens);
    progress_eval(progress, f->step, (float)loss, what, whole_split);
    return 0;
}

static int finetune_loop(Finetune *f, Progress *progress, bool resumed, Error *err)
{
    const TrainConfig *c = &f->cfg;
    int first = f->step;
    governor_init(&f->governor);
    /* the base model's own loss, the point the curve starts from */
    if (!resumed && c->eval_every > 0 && finetune_evaluate(f, progress, false, err) != 0)
        return -1;
    while (f->step < c->steps && !stop_requested) {
        if (finetune_step(f, progress, err) != 0)
            return -1;
        bool last = f->step == c->steps;
        if (c->eval_every > 0 && f->step % c->eval_every == 0 && !last &&
            finetune_evaluate(f, progress, false, err) != 0)
            return -1;
        if (c->save_every > 0 && f->step % c->save_every == 0 && !last) {
            if (finetune_save(f, err) != 0)
                return -1;
            progress_message(progress, "step %d: checkpoint saved in %s", f->step, f->dir);
        }
    }
    if ((f->step != first || !resumed) && finetune_save(f, err) != 0)
        return -1;
    if (stop_requested) {
        plot_write_run_svg(f->dir, f->step);
        progress_message(progress, "interrupted after step %d: checkpoint saved; continue "
                                   "with: quill finetune --resume %s",
                         f->step, f->dir);
        return TRAIN_INTERRUPTED;
    }
    if (f->step != first && finetune_evaluate(f, progress, true, err) != 0)
        return -1;
    plot_write_run_svg(f->dir, f->step);
    progress_message(progress, "saved %s/adapter.gguf after %d step%s", f->dir, f->step,
                     plural_s(f->step));
    return 0;
}

/* Bytes the run holds besides the mapped base: the adapter, its gradient, the two moments,
 * the activations, the backward's scratch and dropout's masked inputs. */
static size_t finetune_memory_bytes(const Finetune *f)
{
    size_t floats = 4 * f->lora.n_params + f->acts.n_floats + f->scratch.n_floats +
                    f->set.dropped_floats;
    return floats * sizeof(float);
}

static void print_summary(const Finetune *f, bool resumed)
{
    const TrainConfig *c = &f->cfg;
    char targets[64];
    lora_targets_format(f->lora.targets, targets, sizeof targets);
    if (resumed)
        printf("resuming from step %d of %d\n", f->step, c->steps);
    printf("base: %s (%.1f MB, mapped, frozen)\n", f->base_path,
           (double)f->model.file->map_size / 1e6);
    uint64_t base_params, base_bytes;
    model_file_size(f->model.file, &base_params, &base_bytes);
    printf("adapter: rank %d, alpha %g, dropout %g, on %s of %d blocks: %zu parameters (%.2f%% "
           "of the base's)\n",
           f->lora.rank, f->lora.alpha, f->dropout, targets, f->model.config.n_layers, f->lora.n_params,
           100.0 * (double)f->lora.n_params / (double)base_params);
    size_t n_val = f->data.n_tokens - f->data.n_train;
    if (f->data.counted)
        printf("data: %zu training and %zu validation tokens of conversations, the loss on %s\n",
               f->data.n_train, n_val, f->loss_on_all ? "every token" : "the assistant's");
    else
        printf("data: %zu training and %zu validation tokens (%s %s/tokens.bin)\n",
               f->data.n_train, n_val, f->data.from_cache ? "checked" : "tokenized into", f->dir);
    printf("training: steps %d..%d, batch %d x %d tokens x %d accumulation, adamw, lr %g -> "
           "%g, seed %d, %d thread%s\n",
           f->step, c->steps, c->batch_size, c->seq_len, c->grad_accum, c->lr, c->min_lr,
           c->seed, compute_threads(), plural_s(compute_threads()));
    printf("memory: %.1f MB (adapter, gradient, 2 AdamW moments, activations) + the mapped "
           "base\n",
           finetune_memory_bytes(f) / 1e6);
    fflush(stdout);
}

static void finetune_free(Finetune *f)
{
    free(f->grads);
    free(f->inputs);
    free(f->targets);
    free(f->starts);
    data_free(&f->data);
    grad_scratch_free(&f->scratch);
    activations_free(&f->acts);
    lora_set_free(&f->set);
    lora_train_free(&f->lora);
    optimizer_free(&f->opt);
    tokenizer_free(&f->tok);
    model_free(&f->model);
    config_free(&f->cfg);
}

static int finetune_main(Finetune *f, const FinetuneArgs *args, const char *base, int argc,
                         char **argv, Error *err)
{
    bool resume = args->resume_dir != NULL;
    if (resume && args->out_dir && strcmp(args->out_dir, args->resume_dir) != 0)
        return error_set(err, "--out %s and --resume %s name different directories",
                         args->out_dir, args->resume_dir);
    if (resume && base)
        return error_set(err, "--resume %s continues with the run's own base model: give no "
                              "BASE.gguf", args->resume_dir);
    f->dir = resume ? args->resume_dir : args->out_dir;
    if (!f->dir)
        return error_set(err, "no run directory: pass --out DIR (or --resume DIR)");
    if ((resume ? setup_resume(f, argc, argv, err) : setup_new(f, args, base, err)) != 0 ||
        data_prepare(f, err) != 0 || finetune_buffers(f, err) != 0 ||
        config_write_run_file(&f->cfg, f->dir, err) != 0)
        return -1;
    if (resume && f->step == f->cfg.steps) {
        printf("the run in %s is already at step %d: nothing to do\n", f->dir, f->step);
        return 0;
    }
    Progress progress = {0};
    print_summary(f, resume);
    if (progress_open(&progress, f->dir, f->step, f->cfg.steps, f->cfg.log_every, true, err) != 0)
        return -1;
    int status = finetune_loop(f, &progress, resume, err);
    progress_close(&progress);
    return status;
}

int cmd_finetune(int argc, char **argv, Error *err)
{
    /* LoRA's usual defaults (peft's examples, llama.cpp's finetune): rank 8, alpha 16 */
    FinetuneArgs args = {.rank = 8, .alpha = 16.0f, .targets = "q,k,v,o,gate,up,down"};
    Finetune f = {0};
    config_init(&f.cfg);
    finetune_defaults(&f.cfg);
    const char *base;
    int parsed = finetune_parse(argc, argv, &args, &f.cfg, &base, err);
    if (parsed != 0) {
        config_free(&f.cfg);
        return parsed < 0 ? -1 : 0;
    }
    struct sigaction sa = {.sa_handler = on_interrupt};
    sigaction(SIGINT, &sa, NULL);
    int status = finetune_main(&f, &args, base, argc, argv, err);
    finetune_free(&f);
    return status;
}
