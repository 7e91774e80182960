/* quill train: the command around the training loop.
 *
 *   setup    a new run trains a tokenizer on the data and initialises a model from the
 *            seed, or (--init) takes both from a downloaded model (base.h); a resumed run
 *            reads everything from DIR/train_state
 *   steps    trainer_step (trainer.h)
 *   along the way
 *            progress and DIR/log.jsonl every step, validation every eval_every steps,
 *            a checkpoint every save_every steps, and always at the end
 *   the end  the whole validation split (logged as the final evaluation: a resume of a run
 *            killed during it does it then), and DIR/loss.svg: the curves (plot.h)
 *   Ctrl-C   finishes the current step, saves a checkpoint and stops with status 130. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base.h"
#include "checkpoint.h"
#include "config.h"
#include "distributed.h"
#include "evaluate.h"
#include "fileio.h"
#include "loader.h"
#include "matmul.h"
#include "plot.h"
#include "progress.h"
#include "timer.h"
#include "train.h"
#include "trainer.h"

typedef struct {
    const char *config_path;
    const char *init_path;
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
    "       quill train --init BASE.gguf --data FILE... --out DIR [options]\n"
    "       quill train --resume DIR [--steps N] [options]\n\n"
    "Trains a llama-style model on plain-text files and writes DIR/model.gguf (runs in\n"
    "llama.cpp as is), DIR/train_state (for --resume), DIR/config.json, DIR/log.jsonl.\n"
    "With --init it fine-tunes every weight of a downloaded F32/F16/BF16 model, with its\n"
    "architecture and tokenizer (for a quantized one: quill finetune).\n"
    "Every config key is also a flag, spelled with dashes (key batch_size is --batch-size;\n"
    "a boolean key x is set by --x and cleared by --no-x). Flags override the config file.\n";

/* quill train's command line: its own flags, then one flag per config key, all parsed by
 * the one parser every command uses. */
enum { TRAIN_OWN_FLAGS = 5 };
typedef struct {
    Flag flags[TRAIN_OWN_FLAGS + CONFIG_N_KEYS];
    CommandSpec spec;
} TrainCommandLine;

static void train_command_line(TrainCommandLine *cl, TrainArgs *args, TrainConfig *cfg)
{
    const Flag own[TRAIN_OWN_FLAGS] = {
        {"config", FLAG_STRING, &args->config_path, 0, 0,
         "JSON config (configs/*.json); flags override its keys"},
        {"init", FLAG_STRING, &args->init_path, 0, 0,
         "start from this GGUF model (F32/F16/BF16): its weights, architecture, tokenizer"},
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

/* The config of a new run: t->cfg as it stands (the defaults, or over them a base model's
 * architecture) with the config file and the flags applied, the data paths made absolute
 * and the derived values filled in. */
static int config_build_new(Trainer *t, const TrainArgs *args, int argc, char **argv,
                            Error *err)
{
    if (config_build(&t->cfg, args, argc, argv, err) != 0 ||
        config_absolute_data_paths(&t->cfg, err) != 0)
        return -1;
    return config_resolve(&t->cfg, err);
}

static int train_setup_new(Trainer *t, const TrainArgs *args, int argc, char **argv,
                           Error *err)
{
    if (config_build_new(t, args, argc, argv, err) != 0)
        return -1;
    compute_set_threads(t->cfg.threads); /* the tokenizer is trained on them */
    return trainer_setup_new(t, err);
}

/* A new run from a downloaded model: the config starts from the base's architecture, and
 * the config file and flags may then change only the run's keys (and crop the context). */
static int train_setup_init(Trainer *t, const TrainArgs *args, int argc, char **argv,
                            Error *err)
{
    GgufFile *base;
    ModelConfig mc;
    if (base_open(args->init_path, &base, &mc, err) != 0)
        return -1;
    base_config_apply(&t->cfg, &mc);
    int status = config_build_new(t, args, argc, argv, err);
    if (status == 0)
        status = base_config_check(&t->cfg, &mc, args->init_path, err);
    if (status == 0) {
        compute_set_threads(t->cfg.threads);
        status = trainer_setup_from_base(t, base, args->init_path, err);
    }
    gguf_close(base);
    return status;
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
        status = config_absolute_data_paths(&t->cfg, err);
    if (status == 0)
        status = config_resolve(&t->cfg, err);
    if (status == 0)
        status = config_check_fixed_keys(&saved, &t->cfg, err);
    config_free(&saved);
    if (status != 0)
        return -1;
    compute_set_threads(t->cfg.threads);
    t->step = state.step;
    t->rng.state = state.rng_state;
    if (t->cfg.steps < t->step)
        return error_set(err, "the run in %s is already at step %d, past --steps %d: nothing "
                              "was changed (pass --steps above %d to train further)",
                         t->dir, t->step, t->cfg.steps, t->step);
    return 0;
}

/* ---- ranks ----------------------------------------------------------------------------- */

/* Under mpirun every rank runs this file's code; rank 0 alone writes (the run directory,
 * the token cache, config.json, log.jsonl, checkpoints) and prints. At the points where all
 * ranks must take the same way, they agree: when any rank failed, all stop, and only the
 * lowest failing rank reports its message (the others end with an empty one, which main
 * does not print). */
static int ranks_agree(const Trainer *t, int status, Error *err)
{
    const Dist *d = t->dist;
    int first_failure = d->size - dist_agree(d, status != 0 ? d->size - d->rank : 0);
    if (first_failure == d->size)
        return 0;
    if (first_failure != d->rank)
        err->msg[0] = '\0';
    else if (d->size > 1)
        error_prefix(err, "rank %d", d->rank);
    return -1;
}

static bool is_root(const Trainer *t)
{
    return dist_is_root(t->dist);
}

/* ---- the loop ----------------------------------------------------------------------- */

/* A checkpoint: gathered onto rank 0 when the moments are sharded, written there. */
static int train_save(Trainer *t, Error *err)
{
    Optimizer full;
    const Optimizer *opt;
    int status = trainer_full_optimizer(t, &full, &opt, err);
    char *json = status == 0 && is_root(t) ? config_to_json(&t->cfg) : NULL;
    if (status == 0 && is_root(t)) {
        TrainProgressState state = {.step = t->step, .rng_state = t->rng.state,
                                    .config_json = json};
        status = json ? checkpoint_save(t->dir, &t->model, &t->tok, opt, &state, err)
                      : error_set(err, "out of memory");
    }
    free(json);
    if (opt == &full)
        optimizer_free(&full);
    return ranks_agree(t, status, err);
}

static int train_evaluate(Trainer *t, Progress *progress, bool whole_split, Error *err)
{
    if (!is_root(t))
        return 0;
    double loss;
    size_t n_tokens;
    int batches = whole_split ? 0 : t->cfg.eval_batches;
    if (eval_mean_loss(&t->model, &t->acts, &t->data, SPLIT_VAL, t->cfg.batch_size,
                       t->cfg.seq_len, batches, &loss, &n_tokens, err) != 0)
        return -1;
    char what[64] = "val";
    if (whole_split)
        snprintf(what, sizeof what, "val (whole split, %zu tokens)", n_tokens);
    progress_eval(progress, t->step, (float)loss, what, whole_split);
    return 0;
}

/* Trains up to the config's steps, then evaluates on the whole validation split and draws
 * the curves. checkpoint_step: the step of the checkpoint already on disk (a resumed run's),
 * -1 for a new run; a run with no step to take does not write it again. Returns 0,
 * TRAIN_INTERRUPTED after Ctrl-C (once saved), or -1. */
static int train_loop(Trainer *t, Progress *progress, int checkpoint_step, Error *err)
{
    const TrainConfig *c = &t->cfg;
    double tokens_per_step = (double)c->batch_size * c->seq_len * c->grad_accum;
    bool stopped = false;
    /* every rank stops at the same step, whichever one saw the Ctrl-C */
    while (t->step < c->steps && !(stopped = dist_agree(t->dist, stop_requested) != 0)) {
        StepStats s;
        if (ranks_agree(t, trainer_step(t, &s, err), err) != 0)
            return -1;
        if (is_root(t))
            progress_step(progress, t->step, s.loss, s.lr, (float)s.grad_norm,
                          tokens_per_step / s.seconds, s.seconds);
        bool last = t->step == c->steps;
        if (c->eval_every > 0 && t->step % c->eval_every == 0 && !last &&
            ranks_agree(t, train_evaluate(t, progress, false, err), err) != 0)
            return -1;
        if (c->save_every > 0 && t->step % c->save_every == 0 && !last) {
            if (train_save(t, err) != 0)
                return -1;
            if (is_root(t))
                progress_message(progress, "step %d: checkpoint saved in %s", t->step, t->dir);
        }
    }
    if (t->step != checkpoint_step && train_save(t, err) != 0)
        return -1;
    if (stopped) {
        if (is_root(t)) {
            plot_write_run_svg(t->dir, t->step);
            progress_message(progress, "interrupted after step %d: checkpoint saved; "
                                       "continue with: quill train --resume %s",
                             t->step, t->dir);
        }
        return TRAIN_INTERRUPTED;
    }
    if (c->steps > 0 && ranks_agree(t, train_evaluate(t, progress, true, err), err) != 0)
        return -1;
    if (is_root(t)) {
        plot_write_run_svg(t->dir, t->step);
        progress_message(progress, "saved %s/model.gguf after %d step%s", t->dir, t->step,
                         plural_s(t->step));
    }
    return 0;
}

/* How long the setup took: on a large corpus, learning the vocabulary and tokenizing take
 * minutes, and the summary says where they went. */
typedef struct {
    double setup_s; /* a new run: counting words and learning the vocabulary */
    double data_s;  /* tokenizing into the cache, or checking the cache */
} SetupTimes;

static void train_print_summary(const Trainer *t, bool resumed, const char *base_path,
                                SetupTimes times)
{
    const TrainConfig *c = &t->cfg;
    const ModelConfig *m = &t->model.config;
    if (resumed)
        printf("resuming from step %d of %d\n", t->step, c->steps);
    if (base_path)
        printf("fine-tuning %s: every weight, in F32\n", base_path);
    printf("model: %d layer%s, dim %d, %d head%s (%d kv), ffn %d, context %d%s: %.2fM "
           "parameters\n",
           m->n_layers, plural_s(m->n_layers), m->dim, m->n_heads, plural_s(m->n_heads),
           m->n_kv_heads, m->ffn_dim, m->context, m->tie_embeddings ? ", tied embeddings" : "",
           (double)t->model.n_params / 1e6);
    char learned[160] = "";
    if (t->tok.n_vocab < t->vocab_asked) /* bpe merges only pairs seen at least twice */
        snprintf(learned, sizeof learned, " (not the %d asked for: no pair of pieces occurs "
                                          "twice any more in this text)", t->vocab_asked);
    if (!resumed && !base_path)
        snprintf(learned + strlen(learned), sizeof learned - strlen(learned),
                 ", learned in %.1f s", times.setup_s);
    printf("tokenizer: %s, %d tokens%s; data: %zu training and %zu validation tokens (%s %s/"
           "tokens.bin in %.1f s)\n",
           c->tokenizer, t->tok.n_vocab, learned, t->data.n_train,
           t->data.n_tokens - t->data.n_train,
           t->data.from_cache ? "checked" : "tokenized into", t->dir, times.data_s);
    printf("training: steps %d..%d, batch %d x %d tokens x %d accumulation, %s, lr %g -> %g, "
           "seed %d, %d thread%s, matmul: %s\n",
           t->step, c->steps, c->batch_size, c->seq_len, c->grad_accum, c->optimizer, c->lr,
           c->min_lr, c->seed, compute_threads(), plural_s(compute_threads()),
           gemm_backend_description());
    if (t->dist->size > 1)
        printf("ranks: %d (MPI), each %d micro-batch%s per step; %.1f MB per rank%s\n",
               t->dist->size, c->grad_accum / t->dist->size,
               c->grad_accum / t->dist->size == 1 ? "" : "es", trainer_memory_bytes(t) / 1e6,
               c->zero ? " (ZeRO-1: AdamW moments sharded)" : "");
    else
        printf("memory: %.1f MB\n", trainer_memory_bytes(t) / 1e6);
    fflush(stdout);
}

/* A new run's directory, made before the token cache is written into it. *created says
 * whether it is new, so that a run that fails to start can take it away again. */
static int run_dir_create(const char *dir, bool *created, Error *err)
{
    *created = access(dir, F_OK) != 0;
    return dir_create_all(dir, err);
}

/* Takes away the directory a new run made and the token cache it wrote there, when the
 * run then failed to start. (In a directory that was there before, the cache stays: it is
 * valid for these files, and the next run uses it.) */
static void run_dir_discard(const char *dir, bool created)
{
    if (!created)
        return;
    char path[4096];
    snprintf(path, sizeof path, "%s/tokens.bin", dir);
    remove(path);
    remove(dir);
}

/* Setup, on every rank: the config, the model (new or resumed) and the data. */
static int train_setup(Trainer *t, const TrainArgs *args, int argc, char **argv, Error *err)
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
    if (resume && args->init_path)
        return error_set(err, "--init starts a new run from a base model; --resume %s "
                              "continues one, whose train_state holds the model already",
                         args->resume_dir);
    if (resume)
        return train_setup_resume(t, args, argc, argv, err);
    return args->init_path ? train_setup_init(t, args, argc, argv, err)
                           : train_setup_new(t, args, argc, argv, err);
}

/* Whether a resumed run has nothing left to do: it is at its last step, and its log holds
 * the final evaluation (a run of 0 steps has none). A run killed during that evaluation
 * has its last checkpoint but not the evaluation, and a resume does it then. Rank 0 reads
 * the log; every rank takes its answer. */
static int run_is_complete(const Trainer *t, bool *complete, Error *err)
{
    bool logged = false;
    int status = 0;
    if (t->step == t->cfg.steps && t->cfg.steps > 0 && is_root(t))
        status = progress_final_eval_logged(t->dir, t->step, &logged, err);
    bool done = t->step == t->cfg.steps && (t->cfg.steps == 0 || logged);
    *complete = dist_agree(t->dist, done) != 0;
    return status;
}

static int train_main(Trainer *t, const TrainArgs *args, int argc, char **argv, Error *err)
{
    SetupTimes times;
    double start = timer_seconds();
    if (ranks_agree(t, train_setup(t, args, argc, argv, err), err) != 0)
        return -1;
    times.setup_s = timer_seconds() - start;
    bool complete = false;
    if (args->resume_dir && ranks_agree(t, run_is_complete(t, &complete, err), err) != 0)
        return -1;
    if (complete) {
        if (is_root(t))
            printf("the run in %s is already at step %d: nothing to do\n", t->dir, t->step);
        return 0;
    }
    if (args->resume_dir && t->step == t->cfg.steps && is_root(t))
        printf("the run in %s is at its last step, %d, without its final evaluation (it was "
               "stopped during it): evaluating now\n", t->dir, t->step);
    bool created = false;
    int status = is_root(t) && !args->resume_dir ? run_dir_create(t->dir, &created, err) : 0;
    if (ranks_agree(t, status, err) != 0)
        return -1;
    Error warning = {{0}};
    start = timer_seconds();
    status = trainer_prepare(t, &warning, err);
    times.data_s = timer_seconds() - start;
    if (status == 0 && is_root(t)) {
        if (warning.msg[0])
            fprintf(stderr, "quill: warning: %s\n", warning.msg);
        status = config_write_run_file(&t->cfg, t->dir, err);
    }
    if (ranks_agree(t, status, err) != 0) {
        if (is_root(t))
            run_dir_discard(t->dir, created);
        return -1;
    }
    Progress progress = {0};
    if (is_root(t)) {
        train_print_summary(t, args->resume_dir != NULL, args->init_path, times);
        status = progress_open(&progress, t->dir, t->step, t->cfg.steps, t->cfg.log_every,
                               !t->dist->mpi, err);
    }
    if (ranks_agree(t, status, err) != 0)
        return -1;
    status = train_loop(t, &progress, args->resume_dir ? t->step : -1, err);
    progress_close(&progress);
    return status;
}

/* Under MPI, a job whose rank exits with an error may be torn down by mpirun as soon as
 * that rank has finalised, before rank 0 returns to main and prints: so rank 0 prints its
 * message here, while every rank is still in the job, and the other ranks stay silent (they
 * found the same failure). Without MPI main prints it, as for every command. */
static void report_before_finalize(const Dist *dist, int status, Error *err)
{
    if (status >= 0 || !dist->mpi)
        return;
    if (dist->rank == 0 && err->msg[0]) {
        fprintf(stderr, "quill: error: %s\n", err->msg);
        fflush(stderr);
    }
    err->msg[0] = '\0';
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
    char init_file[4096]; /* a run directory means its model.gguf, as for every MODEL */
    if (args.init_path) {
        model_path_resolve(args.init_path, init_file, sizeof init_file);
        args.init_path = init_file;
    }
    Dist dist;
    if (dist_init(&dist, &argc, &argv, err) != 0) {
        report_before_finalize(&dist, -1, err);
        dist_finalize(&dist);
        return -1;
    }
    Trainer t = {.dist = &dist};
    config_init(&t.cfg);
    struct sigaction sa = {.sa_handler = on_interrupt};
    sigaction(SIGINT, &sa, NULL);
    int status = train_main(&t, &args, argc, argv, err);
    trainer_free(&t);
    report_before_finalize(&dist, status, err);
    dist_finalize(&dist);
    return status;
}
