/* quill train: the command around the training loop.
 *
 *   setup    a new run trains a tokenizer on the data and initialises a model from the
 *            seed; a resumed run reads everything from DIR/train_state
 *   steps    trainer_step (trainer.h)
 *   along the way
 *            progress and DIR/log.jsonl every step, validation every eval_every steps,
 *            a checkpoint every save_every steps, and always at the end
 *   Ctrl-C   finishes the current step, saves a checkpoint and stops. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "config.h"
#include "evaluate.h"
#include "fileio.h"
#include "matmul.h"
#include "progress.h"
#include "train.h"
#include "trainer.h"

typedef struct {
    const char *config_path;
    const char *out_dir;
    const char *resume_dir;
    bool force;
} TrainArgs;

static volatile sig_atomic_t stop_requested = 0;

static void on_interrupt(int signo)
{
    (void)signo;
    stop_requested = 1;
}

/* ---- command line ------------------------------------------------------------------- */

static const char TRAIN_USAGE[] =
    "usage: quill train --config FILE --data FILE... --out DIR [options]\n"
    "       quill train --resume DIR [--steps N] [options]\n\n"
    "Trains a llama-style model on plain-text files and writes DIR/model.gguf (runs in\n"
    "llama.cpp as is), DIR/train_state (for --resume), DIR/config.json, DIR/log.jsonl.\n"
    "Every config key is also a flag, spelled with dashes (key batch_size is --batch-size;\n"
    "a boolean key x is set by --x and cleared by --no-x). Flags override the config file.\n";

/* quill train's command line: its own flags, then one flag per config key, all parsed by
 * the one parser every command uses. */
enum { TRAIN_OWN_FLAGS = 4 };
typedef struct {
    Flag flags[TRAIN_OWN_FLAGS + CONFIG_N_KEYS];
    CommandSpec spec;
} TrainCommandLine;

static void train_command_line(TrainCommandLine *cl, TrainArgs *args, TrainConfig *cfg)
{
    const Flag own[TRAIN_OWN_FLAGS] = {
        {"config", FLAG_STRING, &args->config_path, 0, 0,
         "JSON config (configs/*.json); flags override its keys"},
        {"out", FLAG_STRING, &args->out_dir, 0, 0, "run directory (created if needed)"},
        {"resume", FLAG_STRING, &args->resume_dir, 0, 0, "continue the run in DIR up to --steps"},
        {"force", FLAG_SWITCH, &args->force, 0, 0,
         "start a new run in a DIR that already holds one"},
    };
    memcpy(cl->flags, own, sizeof own);
    int n_flags = TRAIN_OWN_FLAGS + config_flags(cfg, cl->flags + TRAIN_OWN_FLAGS);
    cl->spec = (CommandSpec){.usage = TRAIN_USAGE, .flags = cl->flags, .n_flags = n_flags};
}

/* Parses the command line into args and cfg. Returns cli_parse_command's result. */
static int train_parse(int argc, char **argv, TrainArgs *args, TrainConfig *cfg, Error *err)
{
    TrainCommandLine cl;
    train_command_line(&cl, args, cfg);
    int n_positional;
    return cli_parse_command(&cl.spec, argc, argv, NULL, &n_positional, stdout, err);
}

/* Applies the config file and then the flags (parsed again onto the config being built, so
 * flags win whatever their position). */
static int config_build(TrainConfig *cfg, const TrainArgs *args, int argc, char **argv,
                        Error *err)
{
    if (args->config_path && config_apply_file(cfg, args->config_path, err) != 0)
        return -1;
    TrainArgs ignored = {0};
    return train_parse(argc, argv, &ignored, cfg, err);
}

/* ---- setup -------------------------------------------------------------------------- */

/* A resumed run needs DIR/train_state; a new one must not overwrite a run already there
 * unless forced. Nothing is created here: a new run creates DIR only once its data and
 * config have been checked, so a run that fails to start leaves nothing behind. */
static int dir_check(const char *dir, bool resume, bool force, Error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/train_state", dir);
    bool has_run = access(path, F_OK) == 0;
    if (resume)
        return has_run ? 0 : error_set(err, "%s: no train_state to resume from", dir);
    if (has_run && !force)
        return error_set(err, "%s already holds a training run: continue it with --resume %s, "
                              "or pass --force to start over",
                         dir, dir);
    return 0;
}

static int train_setup_new(Trainer *t, const TrainArgs *args, int argc, char **argv,
                           Error *err)
{
    if (config_build(&t->cfg, args, argc, argv, err) != 0 || config_resolve(&t->cfg, err) != 0)
        return -1;
    return trainer_setup_new(t, err);
}

static int train_setup_resume(Trainer *t, const TrainArgs *args, int argc, char **argv,
                              Error *err)
{
    TrainProgressState state;
    if (checkpoint_load(t->dir, &t->model, &t->tok, &t->opt, &state, err) != 0)
        return -1;
    TrainConfig saved;
    config_init(&saved);
    int status = config_apply_json(&saved, state.config_json, strlen(state.config_json),
                                   "train_state config", err);
    free(state.config_json);
    /* the run's own config, then a config file and flags given now */
    if (status == 0)
        status = config_copy(&t->cfg, &saved, err);
    if (status == 0)
        status = config_build(&t->cfg, args, argc, argv, err);
    if (status == 0)
        status = config_resolve(&t->cfg, err);
    if (status == 0)
        status = config_check_fixed_keys(&saved, &t->cfg, err);
    config_free(&saved);
    if (status != 0)
        return -1;
    t->step = state.step;
    t->rng.state = state.rng_state;
    if (t->cfg.steps < t->step)
        return error_set(err, "the run in %s is already at step %d, past --steps %d: nothing "
                              "was changed (pass --steps above %d to train further)",
                         t->dir, t->step, t->cfg.steps, t->step);
    return 0;
}

static int config_save(const Trainer *t, Error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", t->dir);
    char *json = config_to_json(&t->cfg);
    if (!json)
        return error_set(err, "out of memory");
    int status = file_write_atomic(path, json, strlen(json), err);
    free(json);
    return status;
}

/* ---- the loop ----------------------------------------------------------------------- */

static int train_save(Trainer *t, Error *err)
{
    char *json = config_to_json(&t->cfg);
    if (!json)
        return error_set(err, "out of memory");
    TrainProgressState state = {.step = t->step, .rng_state = t->rng.state, .config_json = json};
    int status = checkpoint_save(t->dir, &t->model, &t->tok, &t->opt, &state, err);
    free(json);
    return status;
}

static int train_evaluate(Trainer *t, Progress *progress, bool whole_split, Error *err)
{
    double loss;
    size_t n_tokens;
    int batches = whole_split ? 0 : t->cfg.eval_batches;
    if (eval_mean_loss(&t->model, &t->acts, &t->data, SPLIT_VAL, t->cfg.batch_size,
                       t->cfg.seq_len, batches, &loss, &n_tokens, err) != 0)
        return -1;
    char what[64] = "val";
    if (whole_split)
        snprintf(what, sizeof what, "val (whole split, %zu tokens)", n_tokens);
    progress_eval(progress, t->step, (float)loss, what);
    return 0;
}

static int train_loop(Trainer *t, Progress *progress, Error *err)
{
    const TrainConfig *c = &t->cfg;
    double tokens_per_step = (double)c->batch_size * c->seq_len * c->grad_accum;
    while (t->step < c->steps && !stop_requested) {
        StepStats s;
        if (trainer_step(t, &s, err) != 0)
            return -1;
        progress_step(progress, t->step, s.loss, s.lr, (float)s.grad_norm,
                      tokens_per_step / s.seconds, s.seconds);
        bool last = t->step == c->steps;
        if (c->eval_every > 0 && t->step % c->eval_every == 0 && !last &&
            train_evaluate(t, progress, false, err) != 0)
            return -1;
        if (c->save_every > 0 && t->step % c->save_every == 0 && !last &&
            train_save(t, err) != 0)
            return -1;
    }
    if (train_save(t, err) != 0)
        return -1;
    if (stop_requested) {
        progress_message(progress, "interrupted after step %d: checkpoint saved; continue "
                                   "with: quill train --resume %s",
                         t->step, t->dir);
        return 0;
    }
    if (c->steps > 0 && train_evaluate(t, progress, true, err) != 0)
        return -1;
    progress_message(progress, "saved %s/model.gguf after %d steps", t->dir, t->step);
    return 0;
}

static void train_print_summary(const Trainer *t)
{
    const TrainConfig *c = &t->cfg;
    const ModelConfig *m = &t->model.config;
    printf("model: %d layers, dim %d, %d heads (%d kv), ffn %d, context %d%s: %.2fM parameters\n",
           m->n_layers, m->dim, m->n_heads, m->n_kv_heads, m->ffn_dim, m->context,
           m->tie_embeddings ? ", tied embeddings" : "", (double)t->model.n_params / 1e6);
    printf("tokenizer: %s, %d tokens; data: %zu training and %zu validation tokens\n",
           c->tokenizer, t->tok.n_vocab, t->data.n_train, t->data.n_tokens - t->data.n_train);
    printf("training: steps %d..%d, batch %d x %d tokens x %d accumulation, %s, lr %g -> %g, "
           "seed %d, %d threads, matmul: %s\n",
           t->step, c->steps, c->batch_size, c->seq_len, c->grad_accum, c->optimizer, c->lr,
           c->min_lr, c->seed, compute_threads(), gemm_backend_description());
    fflush(stdout);
}

/* Everything a run writes before its first step: the directory, the token cache (when it
 * was built now) and config.json. Called only once the run is known to be able to start. */
static int run_dir_write(const Trainer *t, Error *err)
{
    if (dir_create_all(t->dir, err) != 0 || trainer_save_data_cache(t, err) != 0)
        return -1;
    return config_save(t, err);
}

static int train_main(Trainer *t, const TrainArgs *args, int argc, char **argv, Error *err)
{
    bool resume = args->resume_dir != NULL;
    if (resume && args->out_dir && strcmp(args->out_dir, args->resume_dir) != 0)
        return error_set(err, "--out %s and --resume %s name different directories",
                         args->out_dir, args->resume_dir);
    t->dir = resume ? args->resume_dir : args->out_dir;
    if (!t->dir)
        return error_set(err, "no run directory: pass --out DIR (or --resume DIR)");
    if (dir_check(t->dir, resume, args->force, err) != 0)
        return -1;
    int status = resume ? train_setup_resume(t, args, argc, argv, err)
                        : train_setup_new(t, args, argc, argv, err);
    if (status != 0)
        return -1;
    if (resume && t->step == t->cfg.steps) {
        printf("the run in %s is already at step %d: nothing to do\n", t->dir, t->step);
        return 0;
    }
    compute_set_threads(t->cfg.threads);
    Error warning;
    if (trainer_prepare(t, &warning, err) != 0)
        return -1;
    if (warning.msg[0])
        fprintf(stderr, "quill: warning: %s\n", warning.msg);
    if (run_dir_write(t, err) != 0)
        return -1;
    train_print_summary(t);
    Progress progress;
    if (progress_open(&progress, t->dir, t->step, t->cfg.steps, t->cfg.log_every, err) != 0)
        return -1;
    status = train_loop(t, &progress, err);
    progress_close(&progress);
    return status;
}

int cmd_train(int argc, char **argv, Error *err)
{
    TrainArgs args = {0};
    TrainConfig scratch;
    config_init(&scratch);
    int parsed = train_parse(argc, argv, &args, &scratch, err);
    config_free(&scratch);
    if (parsed != 0)
        return parsed < 0 ? -1 : 0;
    Trainer t = {0};
    config_init(&t.cfg);
    struct sigaction sa = {.sa_handler = on_interrupt};
    sigaction(SIGINT, &sa, NULL);
    int status = train_main(&t, &args, argc, argv, err);
    trainer_free(&t);
    return status;
}
