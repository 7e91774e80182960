/* quill generate: continue a prompt with a GGUF model.
 *
 * The prompt goes through the model in one forward pass, which fills the KV cache; then
 * each new token is one forward pass of a single position that reads the cache. Text is
 * streamed as tokens arrive, holding back the bytes of an unfinished UTF-8 character. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "generate.h"
#include "loader.h"
#include "matmul.h"
#include "sampler.h"
#include "timer.h"

typedef struct {
    const char *prompt;
    int max_tokens;
    float temperature;
    int top_k;
    float top_p;
    int seed; /* -1: pick one from the clock (and print it) */
    int threads;
} GenerateOptions;

/* Bytes of generated text not yet printed. A byte token may end in the middle of a UTF-8
 * character; those bytes wait until the character is complete. */
typedef struct {
    char pending[8];
    size_t len;
} Utf8Stream;

/* Expected length of a UTF-8 character from its first byte (1 for invalid bytes, which
 * are printed as they are). */
static size_t utf8_char_length(unsigned char lead)
{
    return lead >= 0xf0 && lead < 0xf8 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
}

/* Length of the prefix of s that ends on a character boundary. */
static size_t utf8_complete_prefix(const char *s, size_t n)
{
    /* find where the last character starts: at most 3 continuation bytes back */
    for (size_t back = 1; back <= 4 && back <= n; back++) {
        unsigned char c = (unsigned char)s[n - back];
        if ((c & 0xc0) != 0x80)
            return utf8_char_length(c) > back ? n - back : n;
    }
    return n;
}

static void utf8_stream_write(Utf8Stream *s, const char *bytes, size_t n, FILE *out)
{
    for (size_t i = 0; i < n; i++) {
        if (s->len == sizeof s->pending) { /* never a valid character: let it through */
            fwrite(s->pending, 1, s->len, out);
            s->len = 0;
        }
        s->pending[s->len++] = bytes[i];
    }
    size_t ready = utf8_complete_prefix(s->pending, s->len);
    fwrite(s->pending, 1, ready, out);
    memmove(s->pending, s->pending + ready, s->len - ready);
    s->len -= ready;
    fflush(out);
}

static void utf8_stream_finish(Utf8Stream *s, FILE *out)
{
    fwrite(s->pending, 1, s->len, out);
    s->len = 0;
    fflush(out);
}

/* Runs `n` tokens through the model at positions pos0..pos0+n-1 and returns the logits of
 * the last one. */
static const float *forward_tokens(const Model *m, Activations *a, const int *tokens, int n,
                                   int pos0)
{
    model_forward(m, a, tokens, 1, n, pos0);
    return a->logits + (size_t)(n - 1) * m->config.vocab_size;
}

/* Samples up to max_tokens tokens after the prompt and streams them. When the KV cache is
 * full, the most recent half of the tokens is run through the model again at positions
 * 0.. (cached keys cannot simply be moved: RoPE rotated them by their old positions), and
 * generation goes on from there. */
static int generate_tokens(const Model *m, const Tokenizer *tok, const GenerateOptions *o,
                           Sampler *sampler, int *history, int n_prompt, int *n_generated,
                           Error *err)
{
    int context = m->config.context;
    int n_ctx = n_prompt + o->max_tokens < context ? n_prompt + o->max_tokens : context;
    int keep = n_ctx / 2 > 0 ? n_ctx / 2 : 1;
    Activations a;
    if (activations_init(&a, m, ACTS_INFERENCE, 1, n_prompt > keep ? n_prompt : keep, n_ctx,
                         err) != 0)
        return -1;
    const float *logits = forward_tokens(m, &a, history, n_prompt, 0);
    Utf8Stream stream = {{0}, 0};
    int n_history = n_prompt, pos = n_prompt;
    for (*n_generated = 0; *n_generated < o->max_tokens; (*n_generated)++) {
        int next = sampler_sample(sampler, logits);
        if (next == tok->eos_id)
            break;
        char piece[256];
        size_t len = tokenizer_token_bytes(tok, next, piece, sizeof piece);
        utf8_stream_write(&stream, piece, len < sizeof piece ? len : sizeof piece, stdout);
        history[n_history++] = next;
        if (pos == n_ctx) {
            logits = forward_tokens(m, &a, history + n_history - keep, keep, 0);
            pos = keep;
        } else {
            logits = forward_tokens(m, &a, &next, 1, pos++);
        }
    }
    utf8_stream_finish(&stream, stdout);
    activations_free(&a);
    return 0;
}

static int generate_run(const Model *m, const Tokenizer *tok, const GenerateOptions *o,
                        Error *err)
{
    int *prompt;
    size_t n_prompt;
    if (tokenizer_encode(tok, o->prompt, strlen(o->prompt), tok->add_bos, &prompt, &n_prompt,
                         err) != 0)
        return -1;
    int context = m->config.context;
    if (n_prompt == 0 || (int)n_prompt >= context) {
        free(prompt);
        return error_set(err, "the prompt has %zu tokens; the model's context holds %d, so "
                              "between 1 and %d fit",
                         n_prompt, context, context - 1);
    }
    int *history = realloc(prompt, (n_prompt + (size_t)o->max_tokens) * sizeof(int));
    if (!history) {
        free(prompt);
        return error_set(err, "out of memory for %d tokens", o->max_tokens);
    }
    uint64_t seed = o->seed >= 0 ? (uint64_t)o->seed : (uint64_t)time(NULL) % 1000000;
    SamplerParams sp;
    sampler_params_default(&sp);
    sp.temperature = o->temperature;
    sp.top_k = o->top_k;
    sp.top_p = o->top_p;
    sp.min_p = 0.0f; /* the command has flags for top-k, top-p and temperature only */
    sp.seed = seed;
    Sampler sampler;
    if (sampler_init(&sampler, &sp, m->config.vocab_size, err) != 0) {
        free(history);
        return -1;
    }
    fputs(o->prompt, stdout);
    double start = timer_seconds();
    int generated;
    int status = generate_tokens(m, tok, o, &sampler, history, (int)n_prompt, &generated, err);
    double seconds = timer_seconds() - start;
    if (status == 0)
        fprintf(stderr, "\n[seed %llu: %d tokens in %.2f s, %.1f tokens/s]\n",
                (unsigned long long)seed, generated, seconds, generated / seconds);
    sampler_free(&sampler);
    free(history);
    return status;
}

int cmd_generate(int argc, char **argv, Error *err)
{
    GenerateOptions o = {.prompt = "", .max_tokens = 128, .temperature = 0.8f, .top_k = 40,
                         .top_p = 0.95f, .seed = -1};
    const Flag flags[] = {
        {"prompt", FLAG_STRING, &o.prompt, 0, 0, "text to continue"},
        {"max-tokens", FLAG_INT, &o.max_tokens, 0, 1 << 20, "tokens to generate at most"},
        {"temperature", FLAG_FLOAT, &o.temperature, 0, 100, "0 = greedy (argmax)"},
        {"top-k", FLAG_INT, &o.top_k, 0, 1 << 24, "keep the k most likely tokens (0 = off)"},
        {"top-p", FLAG_FLOAT, &o.top_p, 0, 1, "nucleus: keep tokens up to this probability "
                                              "(1 = off)"},
        {"seed", FLAG_INT, &o.seed, -1, 2147483647, "random seed (-1: from the clock)"},
        {"threads", FLAG_INT, &o.threads, 0, 1024, "compute threads (0: all cores)"},
    };
    const CommandSpec spec = {
        .usage = "usage: quill generate MODEL --prompt TEXT [options]\n\n"
                 "Continues TEXT with MODEL (a GGUF file: one quill trained, or a llama-family\n"
                 "model with F32/F16/BF16 weights) and streams the result to stdout.\n",
        .flags = flags,
        .n_flags = sizeof flags / sizeof *flags,
        .min_positional = 1,
        .max_positional = 1,
    };
    const char *positional[1];
    int n_positional;
    int parsed = cli_parse_command(&spec, argc, argv, positional, &n_positional, stdout, err);
    if (parsed != 0)
        return parsed < 0 ? -1 : 0;
    compute_set_threads(o.threads);
    Model m;
    Tokenizer tok;
    if (model_file_load(positional[0], &m, &tok, err) != 0)
        return -1;
    int status = generate_run(&m, &tok, &o, err);
    tokenizer_free(&tok);
    model_free(&m);
    return status;
}
