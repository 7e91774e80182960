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

static int bench_model_run(const char *path, const BenchModelOptions *o, Error *err)
{
    Model m;
    Tokenizer tok;
    if (model_file_load(path, &m, &tok, err) != 0)
        return -1;
    int n = o->prompt_tokens + o->generate_tokens;
    uint32_t cache_type = o->cache_type ? kv_cache_type_from_name(o->cache_type)
                                        : kv_cache_type_default(m.file);
    InferContext ctx;
    InferParams params = {.n_seq = 1, .n_ctx = n, .n_batch = o->prompt_tokens,
                          .cache_type = cache_type};
    int *tokens = malloc((size_t)n * sizeof *tokens);
    double *pp = malloc((size_t)o->reps * sizeof *pp), *tg = malloc((size_t)o->reps * sizeof *tg);
    int status = tokens && pp && tg ? infer_init(&ctx, &m, &params, err)
                                    : error_set(err, "out of memory");
    Rng rng;
    rng_seed(&rng, 3);
    for (int i = 0; status == 0 && i < n; i++)
        tokens[i] = (int)rng_below(&rng, (uint64_t)m.config.vocab_size);
    double warm_pp, warm_tg;
    if (status == 0)
        status = bench_once(&ctx, tokens, o, &warm_pp, &warm_tg, err);
    for (int r = 0; status == 0 && r < o->reps; r++)
        status = bench_once(&ctx, tokens, o, &pp[r], &tg[r], err);
    if (status == 0) {
        double pp_rate = o->prompt_tokens / machine_median(pp, o->reps);
        double tg_rate = o->generate_tokens / machine_median(tg, o->reps);
        double bytes = weight_bytes_per_token(&m);
        uint64_t file_params, file_bytes;
        model_file_size(m.file, &file_params, &file_bytes);
        printf("%s: %.1fM parameters, %.2f MB of weights, %d thread%s, kernels %s, cache %s\n",
               path, (double)file_params / 1e6, (double)file_bytes / 1e6, compute_threads(),
               plural_s(compute_threads()), quant_isa_name(quant_isa()),
               kv_cache_type_name(cache_type));
        printf("pp%d: %.1f tok/s\n", o->prompt_tokens, pp_rate);
        printf("tg%d: %.1f tok/s\n", o->generate_tokens, tg_rate);
        double read = machine_read_gbs();
        printf("decode reads %.1f MB per token: %.1f GB/s, %.0f%% of this machine's read "
               "bandwidth (%.1f GB/s, measured now)\n",
               bytes / 1e6, bytes * tg_rate / 1e9, 100.0 * bytes * tg_rate / 1e9 / read, read);
        double sample = 0.0;
        status = sampler_step_seconds(infer_logits(&ctx, 0), m.config.vocab_size, tokens,
                                      o->prompt_tokens, o->generate_tokens, o->reps, &sample,
                                      err);
        if (status == 0)
            printf("sampler: %.1f us per token (top-k 40, top-p 0.95, min-p 0.05, temperature "
                   "0.8, penalties repeat 1.1, frequency 0.1, presence 0.1 over the last 64): "
                   "%.1f%% of a generated token's time\n",
                   sample * 1e6, 100.0 * sample / (sample + 1.0 / tg_rate));
        if (status == 0 && o->busy_neighbour)
            status = bench_busy_neighbour(&ctx, tokens, o, err);
        infer_free(&ctx);
    }
    free(tokens);
    free(pp);
    free(tg);
    tokenizer_free(&tok);
    model_free(&m);
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
    };
    const CommandSpec spec = {
        .usage = "usage: quill bench MODEL.gguf [-p 128] [-n 64] [-t 2] [-r 5]\n"
                 "       quill bench --write-model FILE.gguf\n\n"
                 "Measures prompt processing (ppP) and generation (tgN) speed on MODEL, in\n"
                 "tokens/s, and the memory bandwidth decoding reached next to this machine's.\n",
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
    return bench_model_run(path, &o, err);
}
