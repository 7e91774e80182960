/* quill bench MODEL.gguf: how fast a model runs here, next to this machine's limits, in the
 * two figures llama-bench reports:
 *   ppP  prompt processing: P tokens through the model in one pass, tokens/s;
 *   tgN  text generation: N tokens one pass each, the cache growing, tokens/s.
 * Each is the median of R repetitions after one warm-up, on random tokens (sampling is not
 * timed, as in llama-bench). Decoding reads every weight once per token, so the weights'
 * bytes times tg's tokens/s is the bandwidth decoding reached: it is printed next to the
 * read bandwidth of this machine measured in the same run, its ceiling. Last, the time one
 * sampling step takes with a realistic chain on the model's logits (32,000 of them for the
 * benchmark model), as a share of a generated token's time.
 *
 * `quill bench MODEL --parallel 1,2,4,8`: N sequences at once, as llama.cpp's
 * llama-batched-bench measures them (-npp P -ntg N -npl 1,2,4,8), in its table: each
 * sequence's prompt of P tokens (all N prompts in one batch), then N tokens generated one
 * by one per sequence, one batch of N rows per step; the aggregate decode speed S_TG is
 * N x N tokens over the steps' time.
 *
 * `quill bench --write-model FILE.gguf` writes the model the benchmark is run on in
 * `make bench`: random F32 weights of a 134M-parameter llama (dim 768, 12 layers, 12
 * heads, ffn 2048, vocabulary 32,000) with a filler vocabulary, which `quill quantize` and
 * llama.cpp's llama-bench take as they are. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "generate.h"
#include "gguf.h"
#include "infer.h"
#include "loader.h"
#include "machine.h"
#include "matmul.h"
#include "quant.h"
#include "rng.h"
#include "sampler.h"
#include "timer.h"

typedef struct {
    int prompt_tokens;    /* -p */
    int generate_tokens;  /* -n */
    int threads;
    int reps;
    const char *cache_type; /* NULL: the model's default, as quill generate */
    const char *write_model;
    bool busy_neighbour;    /* tg again beside a busy process, on the threads and on 1 */
    const char *parallel;   /* "1,2,4,8": llama-batched-bench's table instead */
} BenchModelOptions;

/* ---- the benchmark model --------------------------------------------------------------- */

/* <unk>, <s>, </s>, the 256 byte tokens, then "▁w<i>" fillers up to n_vocab. */
static int filler_tokenizer(Tokenizer *tok, int n_vocab, Error *err)
{
    char **pieces = calloc((size_t)n_vocab, sizeof *pieces);
    float *scores = calloc((size_t)n_vocab, sizeof *scores);
    int32_t *types = calloc((size_t)n_vocab, sizeof *types);
    int status = pieces && scores && types ? 0 : error_set(err, "out of memory");
    for (int i = 0; status == 0 && i < n_vocab; i++) {
        char piece[32];
        if (i < 3)
            snprintf(piece, sizeof piece, "%s", i == 0 ? "<unk>" : i == 1 ? "<s>" : "</s>");
        else if (i < 3 + 256)
            snprintf(piece, sizeof piece, "<0x%02X>", i - 3);
        else
            snprintf(piece, sizeof piece, "\xe2\x96\x81w%d", i);
        pieces[i] = strdup(piece);
        types[i] = i == 0 ? TOKEN_TYPE_UNKNOWN : i < 3 ? TOKEN_TYPE_CONTROL
                   : i < 3 + 256 ? TOKEN_TYPE_BYTE : TOKEN_TYPE_NORMAL;
        scores[i] = (float)-i;
        if (!pieces[i])
            status = error_set(err, "out of memory");
    }
    if (status == 0)
        status = tokenizer_init(tok, n_vocab, (const char *const *)pieces, scores, types, err);
    for (int i = 0; pieces && i < n_vocab; i++)
        free(pieces[i]);
    free(pieces);
    free(scores);
    free(types);
    return status;
}

static int bench_model_write(const char *path, Error *err)
{
    ModelConfig c = {.n_layers = 12, .dim = 768, .n_heads = 12, .n_kv_heads = 12,
                     .ffn_dim = 2048, .vocab_size = 32000, .context = 2048,
                     .rope_base = 10000.0f, .norm_eps = 1e-5f};
    Model m;
    Tokenizer tok;
    if (model_init(&m, &c, err) != 0)
        return -1;
    model_init_params(&m, 1);
    Rng rng;
    rng_seed(&rng, 2);
    for (int i = 0; i < m.n_tensors; i++) /* the output layer starts at zero: make it random */
        if (m.tensors[i].kind == PARAM_OUTPUT)
            for (size_t j = 0; j < (size_t)m.tensors[i].rows * m.tensors[i].cols; j++)
                m.tensors[i].data[j] = 0.02f * rng_normal(&rng);
    double n_params = (double)m.n_params;
    int status = filler_tokenizer(&tok, c.vocab_size, err);
    if (status == 0) {
        GgufWriter *w = gguf_writer_new();
        model_to_gguf(&m, w);
        tokenizer_to_gguf(&tok, w);
        status = gguf_writer_write(w, path, err);
        gguf_writer_free(w);
        tokenizer_free(&tok);
    }
    model_free(&m);
    if (status == 0)
        printf("wrote %s: %.1fM parameters, F32\n", path, n_params / 1e6);
    return status;
}

/* ---- timing ---------------------------------------------------------------------------- */

/* Seconds to process the prompt in one pass, and to then generate n tokens. Each
 * repetition starts as a new `quill generate` would: at the set thread count, with nothing
 * learnt by the thread governor (governor.h) in the ones before. */
static int bench_once(InferContext *ctx, const int *tokens, const BenchModelOptions *o,
                      double *pp_seconds, double *tg_seconds, Error *err)
{
    infer_seq_clear(ctx, 0);
    governor_init(&ctx->governor);
    double t0 = timer_seconds();
    if (infer_decode(ctx, 0, tokens, o->prompt_tokens, err) != 0)
        return -1;
    double t1 = timer_seconds();
    for (int i = 0; i < o->generate_tokens; i++)
        if (infer_decode(ctx, 0, &tokens[o->prompt_tokens + i], 1, err) != 0)
            return -1;
    *pp_seconds = t1 - t0;
    *tg_seconds = timer_seconds() - t1;
    return 0;
}

/* ---- the sampler's share ---------------------------------------------------------------- */

/* The chain a user runs: llama.cpp's defaults (top-k 40, top-p 0.95, min-p 0.05,
 * temperature 0.8) with every penalty on, over the last 64 tokens. */
static void bench_sampler_params(SamplerParams *p)
{
    sampler_params_default(p);
    p->repeat_penalty = 1.1f;
    p->frequency_penalty = 0.1f;
    p->presence_penalty = 0.1f;
    p->seed = 1;
}

/* Seconds one sampling step (sample + accept) takes on the model's logits with
 * bench_sampler_params, the history starting with the prompt: the median of reps runs of
 * `steps` steps. Not part of tg, as in llama-bench; reported next to it. */
static int sampler_step_seconds(const float *logits, int V, const int *prompt, int n_prompt,
                                int steps, int reps, double *seconds, Error *err)
{
    SamplerParams params;
    bench_sampler_params(&params);
    double *runs = malloc((size_t)reps * sizeof *runs);
    if (!runs)
        return error_set(err, "out of memory");
    int status = 0;
    for (int r = 0; status == 0 && r < reps; r++) {
        Sampler sampler;
        if ((status = sampler_init(&sampler, &params, V, err)) != 0)
            break;
        for (int i = 0; status == 0 && i < n_prompt; i++)
            status = sampler_accept(&sampler, prompt[i], true, err);
        double t0 = timer_seconds();
        for (int i = 0; status == 0 && i < steps; i++)
            status = sampler_accept(&sampler, sampler_sample(&sampler, logits), false, err);
        runs[r] = (timer_seconds() - t0) / steps;
        sampler_free(&sampler);
    }
    if (status == 0)
        *seconds = machine_median(runs, reps);
    free(runs);
    return status;
}

/* Bytes of weights one decoded token reads: every matrix once (the embedding only one
 * row, which is negligible). */
static double weight_bytes_per_token(const Model *m)
{
    double bytes = 0.0;
    for (int i = 0; i < m->n_tensors; i++) {
        const ParamTensor *t = &m->tensors[i];
        if (t->kind != PARAM_EMBEDDING || m->config.tie_embeddings)
            bytes += (double)quant_row_bytes(t->weight->type, t->cols) * t->rows;
    }
    return bytes;
}

/* tg beside a busy neighbour (machine_busy_start), on the set threads and on 1 thread,
 * alternating (A B A B ...) so that both meet the same moments of a shared machine: the
 * governor's goal is that the set count loses nothing against 1 thread there. */
static int bench_busy_neighbour(InferContext *ctx, const int *tokens, const BenchModelOptions *o,
                                Error *err)
{
    double *tg[2] = {malloc((size_t)o->reps * sizeof(double)),
                     malloc((size_t)o->reps * sizeof(double))};
    const int threads[2] = {o->threads, 1};
    int status = tg[0] && tg[1] ? 0 : error_set(err, "out of memory");
    int busy = status == 0 ? machine_busy_start() : -1;
    if (status == 0 && busy < 0)
        status = error_set(err, "could not start the busy neighbour process");
    for (int r = -1; status == 0 && r < o->reps; r++) { /* round -1 warms up */
        for (int i = 0; status == 0 && i < 2; i++) {
            double pp, seconds;
            compute_set_threads(threads[i]);
            status = bench_once(ctx, tokens, o, &pp, &seconds, err);
            if (r >= 0)
                tg[i][r] = seconds;
        }
    }
    machine_busy_stop(busy);
    compute_set_threads(o->threads);
    if (status == 0) {
        double set = o->generate_tokens / machine_median(tg[0], o->reps);
        double one = o->generate_tokens / machine_median(tg[1], o->reps);
        printf("busy neighbour: tg%d %.1f tok/s on %d thread%s, %.1f on 1 thread: %.2fx "
               "(beside a process that keeps one core busy)\n",
               o->generate_tokens, set, o->threads, plural_s(o->threads), one, set / one);
    }
    free(tg[0]);
    free(tg[1]);
    return status;
}

/* What both benchmarks run on: the model, a context of n_seq sequences of n_ctx positions,
 * random tokens (n_seq x n_ctx) and room for each repetition's two times. */
typedef struct {
    Model m;
    Tokenizer tok;
    InferContext ctx;
    uint32_t cache_type;
    int *tokens;
    double *pp, *tg; /* (reps) seconds */
} BenchRun;

static int bench_run_open(BenchRun *b, const char *path, const BenchModelOptions *o,
                          const InferParams *shape, Error *err)
{
    memset(b, 0, sizeof *b);
    if (model_file_load(path, &b->m, &b->tok, err) != 0) {
        memset(b, 0, sizeof *b); /* nothing loaded: bench_run_close has nothing to free */
        return -1;
    }
    b->cache_type = o->cache_type ? kv_cache_type_from_name(o->cache_type)
                                  : kv_cache_type_default(b->m.file);
    InferParams params = *shape;
    params.cache_type = b->cache_type;
    size_t n_tokens = (size_t)params.n_seq * params.n_ctx;
    b->tokens = malloc(n_tokens * sizeof *b->tokens);
    b->pp = malloc((size_t)o->reps * sizeof *b->pp);
    b->tg = malloc((size_t)o->reps * sizeof *b->tg);
    if (!b->tokens || !b->pp || !b->tg)
        return error_set(err, "out of memory");
    Rng rng;
    rng_seed(&rng, 3);
    for (size_t i = 0; i < n_tokens; i++)
        b->tokens[i] = (int)rng_below(&rng, (uint64_t)b->m.config.vocab_size);
    return infer_init(&b->ctx, &b->m, &params, err);
}

/* Frees what bench_run_open got, however far it went. */
static void bench_run_close(BenchRun *b)
{
    infer_free(&b->ctx);
    free(b->tokens);
    free(b->pp);
    free(b->tg);
    tokenizer_free(&b->tok);
    model_free(&b->m);
}

static int bench_model_run(const char *path, const BenchModelOptions *o, Error *err)
{
    BenchRun b;
    InferParams shape = {.n_seq = 1, .n_ctx = o->prompt_tokens + o->generate_tokens,
                         .n_batch = o->prompt_tokens};
    int status = bench_run_open(&b, path, o, &shape, err);
    InferContext *ctx = &b.ctx;
    const Model *m = &b.m;
    const int *tokens = b.tokens;
    double warm_pp, warm_tg;
    if (status == 0)
        status = bench_once(ctx, tokens, o, &warm_pp, &warm_tg, err);
    for (int r = 0; status == 0 && r < o->reps; r++)
        status = bench_once(ctx, tokens, o, &b.pp[r], &b.tg[r], err);
    if (status == 0) {
        double pp_rate = o->prompt_tokens / machine_median(b.pp, o->reps);
        double tg_rate = o->generate_tokens / machine_median(b.tg, o->reps);
        double bytes = weight_bytes_per_token(m);
        uint64_t file_params, file_bytes;
        model_file_size(m->file, &file_params, &file_bytes);
        printf("%s: %.1fM parameters, %.2f MB of weights, %d thread%s, kernels %s, cache %s\n",
               path, (double)file_params / 1e6, (double)file_bytes / 1e6, compute_threads(),
               plural_s(compute_threads()), quant_isa_name(quant_isa()),
               kv_cache_type_name(b.cache_type));
        printf("pp%d: %.1f tok/s\n", o->prompt_tokens, pp_rate);
        printf("tg%d: %.1f tok/s\n", o->generate_tokens, tg_rate);
        double read = machine_read_gbs();
        printf("decode reads %.1f MB per token: %.1f GB/s, %.0f%% of this machine's read "
               "bandwidth (%.1f GB/s, measured now)\n",
               bytes / 1e6, bytes * tg_rate / 1e9, 100.0 * bytes * tg_rate / 1e9 / read, read);
        double sample = 0.0;
        status = sampler_step_seconds(infer_logits(ctx, 0), m->config.vocab_size, tokens,
                                      o->prompt_tokens, o->generate_tokens, o->reps, &sample,
                                      err);
        if (status == 0)
            printf("sampler: %.1f us per token (top-k 40, top-p 0.95, min-p 0.05, temperature "
                   "0.8, penalties repeat 1.1, frequency 0.1, presence 0.1 over the last 64): "
                   "%.1f%% of a generated token's time\n",
                   sample * 1e6, 100.0 * sample / (sample + 1.0 / tg_rate));
        if (status == 0 && o->busy_neighbour)
            status = bench_busy_neighbour(ctx, tokens, o, err);
    }
    bench_run_close(&b);
    return status;
}

/* ---- N sequences at once (--parallel) ------------------------------------------------------ */

enum { MAX_PARALLEL_COUNTS = 16, MAX_PARALLEL = 256 };

/* "1,2,4,8" into counts; the message names what is wrong. */
static int parse_parallel(const char *text, int *counts, int *n, Error *err)
{
    *n = 0;
    for (const char *p = text; *p;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > MAX_PARALLEL || (*end && *end != ','))
            return error_set(err, "--parallel %s: a list of sequence counts from 1 to %d, such "
                                  "as 1,2,4,8", text, MAX_PARALLEL);
        if (*n == MAX_PARALLEL_COUNTS)
            return error_set(err, "--parallel %s: at most %d counts", text, MAX_PARALLEL_COUNTS);
        counts[(*n)++] = (int)v;
        p = *end ? end + 1 : end;
    }
    return *n > 0 ? 0 : error_set(err, "--parallel: no sequence counts");
}

/* One llama-batched-bench row: n_seq prompts of prompt_tokens in one batch (the logits of
 * its last row only), then generate_tokens steps of one row per sequence. Each run starts
 * with empty caches and nothing learnt by the governor. */
static int parallel_once(InferContext *ctx, const int *tokens, int n_seq,
                         const BenchModelOptions *o, double *pp_seconds, double *tg_seconds,
                         Error *err)
{
    int P = o->prompt_tokens, rows = n_seq * P;
    int *pos = malloc((size_t)rows * sizeof *pos), *seq = malloc((size_t)rows * sizeof *seq);
    int status = pos && seq ? 0 : error_set(err, "out of memory");
    for (int i = 0; status == 0 && i < rows; i++) { /* sequence 0's prompt, then 1's, ... */
        seq[i] = i / P;
        pos[i] = i % P;
    }
    int steps[MAX_PARALLEL]; /* a step's rows: sequences 0 .. n_seq-1 */
    for (int s = 0; s < n_seq; s++)
        steps[s] = s;
    for (int s = 0; s < n_seq; s++)
        infer_seq_clear(ctx, s);
    governor_init(&ctx->governor);
    double t0 = timer_seconds();
    if (status == 0) {
        InferBatch prompts = {.token = tokens, .pos = pos, .seq = seq, .n = rows};
        status = infer_decode_batch(ctx, &prompts, err);
    }
    double t1 = timer_seconds();
    for (int i = 0; status == 0 && i < o->generate_tokens; i++)
        status = infer_decode_step(ctx, steps, tokens + rows + i * n_seq, n_seq, err);
    *pp_seconds = t1 - t0;
    *tg_seconds = timer_seconds() - t1;
    free(pos);
    free(seq);
    return status;
}

/* The median of o->reps runs (after one warm-up) of one row of the table, printed. */
static int parallel_row(InferContext *ctx, const int *tokens, int n_seq,
                        const BenchModelOptions *o, double *pp, double *tg, Error *err)
{
    int status = parallel_once(ctx, tokens, n_seq, o, &pp[0], &tg[0], err);
    for (int r = 0; status == 0 && r < o->reps; r++)
        status = parallel_once(ctx, tokens, n_seq, o, &pp[r], &tg[r], err);
    if (status != 0)
        return -1;
    int P = o->prompt_tokens, N = o->generate_tokens, n_kv = n_seq * (P + N);
    double t_pp = machine_median(pp, o->reps), t_tg = machine_median(tg, o->reps);
    printf("|%6d | %6d | %4d | %6d | %8.3f | %8.2f | %8.3f | %8.2f | %8.3f | %8.2f |\n",
           P, N,
           n_seq, n_kv, t_pp, n_seq * P / t_pp, t_tg, n_seq * N / t_tg, t_pp + t_tg,
           n_kv / (t_pp + t_tg));
    return 0;
}

static int bench_parallel(const char *path, const BenchModelOptions *o, Error *err)
{
    int counts[MAX_PARALLEL_COUNTS], n_counts, most = 0;
    if (parse_parallel(o->parallel, counts, &n_counts, err) != 0)
        return -1;
    for (int i = 0; i < n_counts; i++)
        most = counts[i] > most ? counts[i] : most;
    BenchRun b;
    InferParams shape = {.n_seq = most, .n_ctx = o->prompt_tokens + o->generate_tokens};
    int status = bench_run_open(&b, path, o, &shape, err);
    if (status == 0) {
        printf("%s: %d thread%s, kernels %s, cache %s, n_batch %d, %d runs (medians)\n\n", path,
               compute_threads(), plural_s(compute_threads()), quant_isa_name(quant_isa()),
               kv_cache_type_name(b.cache_type), b.ctx.params.n_batch, o->reps);
        printf("|%6s | %6s | %4s | %6s | %8s | %8s | %8s | %8s | %8s | %8s |\n", "PP", "TG", "B",
               "N_KV", "T_PP s", "S_PP t/s", "T_TG s", "S_TG t/s", "T s", "S t/s");
        printf("|%6s-|-%6s-|-%4s-|-%6s-|-%8s-|-%8s-|-%8s-|-%8s-|-%8s-|-%8s-|\n", "------",
               "------", "----", "------", "--------", "--------", "--------", "--------",
               "--------", "--------");
    }
    for (int i = 0; status == 0 && i < n_counts; i++)
        status = parallel_row(&b.ctx, b.tokens, counts[i], o, b.pp, b.tg, err);
    bench_run_close(&b);
    return status;
}

int cmd_bench_model(int argc, char **argv, Error *err)
{
    BenchModelOptions o = {.prompt_tokens = 128, .generate_tokens = 64, .threads = 2,
                           .reps = 5};
    const Flag flags[] = {
        {"prompt-tokens", FLAG_INT, &o.prompt_tokens, 1, 16384, "tokens of the prompt pass",
         .short_name = 'p'},
        {"gen-tokens", FLAG_INT, &o.generate_tokens, 1, 16384, "tokens generated one by one",
         .short_name = 'n'},
        {"threads", FLAG_INT, &o.threads, 1, 1024, "compute threads", .short_name = 't'},
        {"reps", FLAG_INT, &o.reps, 1, 1000, "timed repetitions (the median is shown)",
         .short_name = 'r'},
        {"cache-type", FLAG_CHOICE, &o.cache_type, 0, 0,
         "the KV cache's type (default: as quill generate, f16 or f32 for quill's own F32 "
         "models)", KV_CACHE_TYPE_NAMES},
        {"write-model", FLAG_STRING, &o.write_model, 0, 0,
         "write the 134M-parameter F32 benchmark model to this file and stop"},
        {"busy-neighbour", FLAG_SWITCH, &o.busy_neighbour, 0, 0,
         "then tgN again beside a process that keeps one core busy, on --threads and on 1"},
        {"parallel", FLAG_STRING, &o.parallel, 0, 0,
         "N sequences at once, for each N of a list (1,2,4,8): llama-batched-bench's table"},
    };
    const CommandSpec spec = {
        .usage = "usage: quill bench MODEL.gguf [-p 128] [-n 64] [-t 2] [-r 5] [--parallel 1,2,4,8]\n"
                 "       quill bench --write-model FILE.gguf\n\n"
                 "Measures prompt processing (ppP) and generation (tgN) speed on MODEL, in\n"
                 "tokens/s, and the memory bandwidth decoding reached next to this machine's.\n"
                 "With --parallel: N sequences decoding together, as llama-batched-bench.\n",
        .flags = flags,
        .n_flags = sizeof flags / sizeof *flags,
        .min_positional = 0,
        .max_positional = 1,
    };
    const char *positional[1];
    int n_positional;
    int parsed = cli_parse_command(&spec, argc, argv, positional, &n_positional, stdout, err);
    if (parsed != 0)
        return parsed < 0 ? -1 : 0;
    if (o.write_model)
        return bench_model_write(o.write_model, err);
    if (n_positional == 0)
        return error_set(err, "no model: quill bench MODEL.gguf (see quill bench --help)");
    compute_set_threads(o.threads);
    char path[4096];
    model_path_resolve(positional[0], path, sizeof path);
    return o.parallel ? bench_parallel(path, &o, err) : bench_model_run(path, &o, err);
}
