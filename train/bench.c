/* quill bench: how fast quill trains, next to how fast this machine can go.
 *
 * The machine's limits come first, measured in the same run and with the same threads
 * (src/machine.h): the sgemm peak and the memory bandwidth. Then, per config, a real run of
 * the trainer `quill train` uses on the given text: the steps after a warm-up are timed and
 * the median step gives tokens/s. GFLOP/s counts the model FLOPs a token needs
 * (model_train_flops_per_token) and is shown as a share of the sgemm peak.
 * `quill bench MODEL.gguf` is the inference benchmark instead (generate/bench.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "corpus.h"
#include "distributed.h"
#include "machine.h"
#include "matmul.h"
#include "timer.h"
#include "train.h"
#include "trainer.h"

typedef struct {
    const char *data;
    int threads;
    int steps;      /* timed steps per config */
    int warmup;     /* untimed steps first */
    int grad_accum; /* 0: the config's */
    bool busy_neighbour; /* each config again beside a busy process */
    bool machine_only;   /* the machine's limits alone, no training */
    const Dist *dist;
} BenchOptions;

/* The config of one benchmark run on `threads` threads: the file, then the benchmark's own
 * settings, resolved (cfg is initialised here; the caller frees it). */
static int bench_config_build(TrainConfig *cfg, const char *config_path, const BenchOptions *o,
                              int threads, Error *err)
{
    config_init(cfg);
    char steps[16], threads_text[16];
    snprintf(steps, sizeof steps, "%d", o->warmup + o->steps);
    snprintf(threads_text, sizeof threads_text, "%d", threads);
    const char *overrides[][2] = {{"data", o->data}, {"steps", steps}, {"threads", threads_text},
                                  {"eval_every", "0"}, {"save_every", "0"}};
    if (config_apply_file(cfg, config_path, err) != 0)
        return -1;
    for (size_t i = 0; i < sizeof overrides / sizeof *overrides; i++)
        if (config_set_key(cfg, overrides[i][0], overrides[i][1], err) != 0)
            return -1;
    if (o->grad_accum > 0)
        cfg->grad_accum = o->grad_accum;
    return config_resolve(cfg, err) == 0 ? 0 : error_prefix(err, "%s", config_path);
}

/* Every config and the data are checked before the seconds of measuring the machine, so
 * that a mistyped name is refused at once. */
static int bench_check_arguments(const char *const *configs, int n_configs,
                                 const BenchOptions *o, Error *err)
{
    for (int i = 0; i < n_configs; i++) {
        TrainConfig cfg;
        int status = bench_config_build(&cfg, configs[i], o, o->threads, err);
        config_free(&cfg);
        if (status != 0)
            return -1;
    }
    return corpus_check_text(&o->data, 1, err);
}

/* What one config's short run measured. */
typedef struct {
    double n_params, tokens_per_step, tokens_per_s, gflops;
} ConfigSpeed;

/* A short real training run of one config on `threads` threads: the median step's speed. */
static int bench_config(const char *config_path, const BenchOptions *o, int threads,
                        ConfigSpeed *speed, Error *err)
{
    char dir[] = "/tmp/quill-bench-XXXXXX";
    if (!mkdtemp(dir))
        return error_set(err, "cannot create a temporary directory");
    Trainer t = {.dir = dir, .dist = o->dist};
    int status = -1;
    double *seconds = malloc((size_t)o->steps * sizeof(double));
    compute_set_threads(threads);
    Error warning;
    if (bench_config_build(&t.cfg, config_path, o, threads, err) != 0 || !seconds ||
        trainer_setup_new(&t, err) != 0 || trainer_prepare(&t, &warning, err) != 0)
        goto done;
    for (int step = 0; step < o->warmup + o->steps; step++) {
        StepStats s;
        if (trainer_step(&t, &s, err) != 0)
            goto done;
        if (step >= o->warmup)
            seconds[step - o->warmup] = s.seconds;
    }
    speed->n_params = (double)t.model.n_params;
    speed->tokens_per_step = (double)t.cfg.batch_size * t.cfg.seq_len * t.cfg.grad_accum;
    speed->tokens_per_s = speed->tokens_per_step / machine_median(seconds, o->steps);
    speed->gflops = model_train_flops_per_token(&t.model, t.cfg.seq_len) * speed->tokens_per_s / 1e9;
    status = 0;
done:
    free(seconds);
    rmdir(dir);
    trainer_free(&t);
    return status;
}

static const char *config_name(const char *config_path)
{
    return strrchr(config_path, '/') ? strrchr(config_path, '/') + 1 : config_path;
}

/* The config's line of the table. */
static int bench_config_line(const char *config_path, const BenchOptions *o, double sgemm_peak,
                             Error *err)
{
    ConfigSpeed s;
    if (bench_config(config_path, o, o->threads, &s, err) != 0)
        return -1;
    if (dist_is_root(o->dist))
        printf("  %-24s %8.2fM %8.0f %11.0f %9.1f %8.0f%%\n", config_name(config_path),
               s.n_params / 1e6, s.tokens_per_step, s.tokens_per_s, s.gflops,
               100.0 * s.gflops / sgemm_peak);
    fflush(stdout);
    return 0;
}

/* The same run beside a busy neighbour (machine_busy_start), on --threads and on 1 thread,
 * alternating for BUSY_ROUNDS rounds (A B A B ...) so that both meet the same moments of a
 * shared machine: the thread governor's goal is that --threads loses nothing against 1
 * thread there. */
enum { BUSY_ROUNDS = 3 };

static int bench_config_busy(const char *config_path, const BenchOptions *o, Error *err)
{
    double rates[2][BUSY_ROUNDS];
    const int threads[2] = {o->threads, 1};
    int busy = machine_busy_start(), status = 0;
    if (busy < 0)
        return error_set(err, "could not start the busy neighbour process");
    for (int r = 0; status == 0 && r < BUSY_ROUNDS; r++)
        for (int i = 0; status == 0 && i < 2; i++) {
            ConfigSpeed s;
            status = bench_config(config_path, o, threads[i], &s, err);
            rates[i][r] = s.tokens_per_s;
        }
    machine_busy_stop(busy);
    compute_set_threads(o->threads);
    if (status != 0)
        return -1;
    double set = machine_median(rates[0], BUSY_ROUNDS), one = machine_median(rates[1], BUSY_ROUNDS);
    printf("  busy neighbour: %s %.0f tokens/s on %d thread%s, %.0f on 1 thread: %.2fx "
           "(beside a process that keeps one core busy; medians of %d alternating runs)\n",
           config_name(config_path), set, o->threads, plural_s(o->threads), one, set / one,
           BUSY_ROUNDS);
    fflush(stdout);
    return 0;
}

/* The machine's limits, on rank 0 (the other ranks of an MPI job wait meanwhile): the
 * sgemm peak that every matmul-bound figure is set against, and the memory bandwidth. */
static double bench_machine(const BenchOptions *o)
{
    printf("machine: %d thread%s, matmul %s\n", o->threads, plural_s(o->threads),
           gemm_backend_description());
    double peak = machine_sgemm_gflops(1024), big = machine_sgemm_gflops(2048);
    peak = big > peak ? big : peak;
    printf("  sgemm peak       %7.1f GFLOP/s  (best of 1024^3 and 2048^3 products)\n", peak);
    printf("  memory triad     %7.1f GB/s     (a = b + s*c over 3 x 64 MB)\n",
           machine_triad_gbs());
    fflush(stdout);
    return peak;
}

/* The header of the training table that bench_config_line fills. */
static void bench_training_header(const BenchOptions *o)
{
    printf("training: median of %d step%s after %d warm-up step%s, %d thread%s x %d rank%s, "
           "data %s\n",
           o->steps, plural_s(o->steps), o->warmup, plural_s(o->warmup), o->threads,
           plural_s(o->threads), o->dist->size, plural_s(o->dist->size), o->data);
    printf("  %-24s %9s %8s %11s %9s %9s\n", "config", "params", "tok/step", "tokens/s",
           "GFLOP/s", "of peak");
}

int cmd_bench(int argc, char **argv, Error *err)
{
    BenchOptions o = {.data = "data/tinyshakespeare.txt", .threads = 2, .steps = 10,
                      .warmup = 3};
    const Flag flags[] = {
        {"data", FLAG_STRING, &o.data, 0, 0, "text to train on"},
        {"threads", FLAG_INT, &o.threads, 1, 1024, "compute threads"},
        {"steps", FLAG_INT, &o.steps, 1, 100000, "timed steps per config"},
        {"warmup", FLAG_INT, &o.warmup, 0, 100000, "untimed steps before them"},
        {"grad-accum", FLAG_INT, &o.grad_accum, 0, 65536,
         "micro-batches per step (0: the config's; a multiple of the MPI ranks)"},
        {"busy-neighbour", FLAG_SWITCH, &o.busy_neighbour, 0, 0,
         "each config again beside a process that keeps one core busy, on --threads and on 1"},
        {"machine", FLAG_SWITCH, &o.machine_only, 0, 0,
         "the machine's sgemm peak and memory bandwidth alone, then stop"},
    };
    const CommandSpec spec = {
        .usage = "usage: quill bench [CONFIG...] [options]\n"
                 "       mpirun -np N quill bench [CONFIG...] [options]\n\n"
                 "Measures the machine (sgemm GFLOP/s, memory GB/s) and the training throughput\n"
                 "of each CONFIG (default: configs/shakespeare-char.json, configs/bench-s.json,\n"
                 "configs/bench-m.json) on the --data text; under mpirun, data-parallel over the\n"
                 "ranks. quill bench MODEL.gguf measures inference instead.\n",
        .flags = flags,
        .n_flags = sizeof flags / sizeof *flags,
        .min_positional = 0,
        .max_positional = 16,
    };
    const char *configs[16] = {"configs/shakespeare-char.json", "configs/bench-s.json",
                               "configs/bench-m.json"};
    const char *positional[16];
    int n_configs;
    int parsed = cli_parse_command(&spec, argc, argv, positional, &n_configs, stdout, err);
    if (parsed != 0)
        return parsed < 0 ? -1 : 0;
    if (n_configs > 0 && o.machine_only)
        return error_set(err, "--machine measures the machine alone: give it no config");
    if (n_configs > 0)
        memcpy(configs, positional, (size_t)n_configs * sizeof *configs);
    else
        n_configs = o.machine_only ? 0 : 3;
    Dist dist;
    int status = dist_init(&dist, &argc, &argv, err);
    o.dist = &dist;
    if (status == 0 && n_configs > 0)
        status = bench_check_arguments(configs, n_configs, &o, err);
    compute_set_threads(o.threads);
    double peak = status == 0 && dist_is_root(&dist) ? bench_machine(&o) : 1.0;
    if (status == 0 && n_configs > 0 && dist_is_root(&dist))
        bench_training_header(&o);
    if (status == 0 && o.busy_neighbour && dist.size > 1)
        status = error_set(err, "--busy-neighbour measures one process: run it without mpirun");
    for (int i = 0; status == 0 && i < n_configs; i++)
        if (bench_config_line(configs[i], &o, peak, err) != 0 ||
            (o.busy_neighbour && bench_config_busy(configs[i], &o, err) != 0))
            status = error_prefix(err, "%s", configs[i]);
    if (status != 0 && !dist_is_root(&dist))
        err->msg[0] = '\0';
    dist_finalize(&dist);
    return status;
}
