#include "session.h"

#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "chart.h"
#include "loader.h"
#include "stream.h"
#include "timer.h"

const char *finish_reason_name(FinishReason r)
{
    static const char *const names[] = {"length", "eos", "stop", "context", "interrupted"};
    return names[r];
}

/* ---- completions ------------------------------------------------------------------------ */

void completion_free(Completion *c)
{
    free(c->text);
    free(c->tokens);
    memset(c, 0, sizeof *c);
}

int completion_add_token(Completion *c, int token, Error *err)
{
    if (c->n_tokens == c->cap_tokens) {
        int cap = c->cap_tokens ? 2 * c->cap_tokens : 64;
        int *grown = realloc(c->tokens, (size_t)cap * sizeof *grown);
        if (!grown)
            return error_set(err, "out of memory");
        c->tokens = grown;
        c->cap_tokens = cap;
    }
    c->tokens[c->n_tokens++] = token;
    return 0;
}

int completion_add_text(Completion *c, const char *bytes, size_t n, Error *err)
{
    if (buffer_reserve(&c->text, &c->cap, c->len + n + 1, 256, "generated text", err) != 0)
        return -1;
    memcpy(c->text + c->len, bytes, n);
    c->len += n;
    c->text[c->len] = '\0';
    return 0;
}

/* ---- history ------------------------------------------------------------------------------ */

static int history_push(Session *s, int token, bool is_prompt, Error *err)
{
    if (s->n_history == s->cap_history) {
        int cap = s->cap_history ? 2 * s->cap_history : 256;
        SamplerToken *grown = realloc(s->history, (size_t)cap * sizeof *grown);
        if (!grown)
            return error_set(err, "out of memory");
        s->history = grown;
        s->cap_history = cap;
    }
    s->history[s->n_history++] = (SamplerToken){token, is_prompt};
    return sampler_accept(&s->sampler, token, is_prompt, err);
}

/* The sampler from the options, its history replayed (a new sampler after /set). */
static int sampler_build(Session *s, Error *err)
{
    SamplerParams params;
    if (generate_sampler_params(s->o, s->tok, s->seed, &params, err) != 0)
        return -1;
    Sampler sampler;
    if (sampler_init(&sampler, &params, s->model->config.vocab_size, err) != 0) {
        generate_sampler_params_free(&params);
        return -1;
    }
    for (int i = 0; i < s->n_history; i++)
        if (sampler_accept(&sampler, s->history[i].token, s->history[i].is_prompt, err) != 0) {
            sampler_free(&sampler);
            generate_sampler_params_free(&params);
            return -1;
        }
    sampler_free(&s->sampler);
    generate_sampler_params_free(&s->params);
    s->sampler = sampler;
    s->params = params;
    return 0;
}

/* ---- the session --------------------------------------------------------------------------- */

/* What a context means, said before it is allocated (infer_init refuses one that does not
 * fit in memory): a warning when it reaches past the positions the model was trained on,
 * where RoPE meets angles it never saw and the text usually falls apart, and a note when
 * it takes more than a gigabyte, so that no run takes gigabytes without a word. */
static void context_report(const Model *m, const InferParams *p)
{
    if (p->n_ctx > m->config.context)
        fprintf(stderr, "quill: warning: a context of %d positions is longer than the %d the "
                        "model was trained on; the text may fall apart past position %d\n",
                p->n_ctx, m->config.context, m->config.context);
    size_t bytes = infer_memory_bytes(m, p);
    if (bytes > 1000000000 && bytes <= infer_memory_available())
        fprintf(stderr, "quill: a context of %d positions%s takes %.2f GB of memory (KV cache "
                        "%.2f GB of %s)\n",
                p->n_ctx, p->n_seq > 1 ? " per sequence" : "", bytes / 1e9,
                model_kv_cache_bytes(&m->config, p->n_seq, p->n_ctx, p->cache_type) / 1e9,
                kv_cache_type_name(p->cache_type));
}

int session_init(Session *s, const Model *m, const Tokenizer *tok, GenerateOptions *o,
                 uint64_t seed, int n_seq, int n_ctx, Error *err)
{
    memset(s, 0, sizeof *s);
    s->model = m;
    s->tok = tok;
    s->o = o;
    s->seed = seed;
    s->n_ctx = n_ctx;
    if (!o->cache_type) /* the model's default, named so that /status and --verbose show it */
        o->cache_type = kv_cache_type_name(kv_cache_type_default(m->file));
    InferParams params = {.n_seq = n_seq, .n_ctx = n_ctx,
                          .cache_type = kv_cache_type_from_name(o->cache_type)};
    context_report(m, &params);
    if (infer_init(&s->ctx, m, &params, err) != 0)
        return -1;
    if (sampler_build(s, err) != 0) {
        session_free(s);
        return -1;
    }
    return 0;
}

void session_free(Session *s)
{
    infer_free(&s->ctx);
    sampler_free(&s->sampler);
    generate_sampler_params_free(&s->params);
    free(s->history);
    memset(s, 0, sizeof *s);
}

int session_update_sampler(Session *s, Error *err)
{
    return sampler_build(s, err);
}

void session_reset(Session *s)
{
    infer_seq_clear(&s->ctx, 0);
    sampler_reset(&s->sampler);
    s->n_history = 0;
}

int session_feed(Session *s, const int *tokens, int n, Error *err)
{
    if (n == 0)
        return 0;
    int used = infer_seq_length(&s->ctx, 0);
    if (used + n > s->n_ctx)
        return error_set(err, "the prompt has %d token%s and %d are in the context already; "
                              "the context holds %d (give a larger --context)",
                         n, plural_s(n), used, s->n_ctx);
    s->prompt_start = timer_seconds();
    if (infer_decode(&s->ctx, 0, tokens, n, err) != 0)
        return -1;
    for (int i = 0; i < n; i++)
        if (history_push(s, tokens[i], true, err) != 0)
            return -1;
    s->stats.prompt_tokens += n;
    s->stats.prompt_seconds += timer_seconds() - s->prompt_start;
    return 0;
}

/* When the cache is full: its last half goes through the model again from position 0
 * (cached keys cannot simply be moved: RoPE rotated them by their old positions). */
static int context_shift(Session *s, Error *err)
{
    int keep = s->n_ctx / 2 > 0 ? s->n_ctx / 2 : 1;
    int *tokens = malloc((size_t)keep * sizeof *tokens);
    if (!tokens)
        return error_set(err, "out of memory");
    for (int i = 0; i < keep; i++)
        tokens[i] = s->history[s->n_history - keep + i].token;
    infer_seq_clear(&s->ctx, 0);
    int status = infer_decode(&s->ctx, 0, tokens, keep, err);
    free(tokens);
    return status;
}

bool session_token_ends_text(const Session *s, int token)
{
    const Tokenizer *tok = s->tok;
    bool end = token == tok->eos_id || (tok->eot_id >= 0 && token == tok->eot_id);
    return end && !s->o->ignore_eos;
}

/* --show-probs: the chain's surviving candidates of this step, most likely first, as a
 * table with bars, and which one was chosen. */
static void show_candidates(const Tokenizer *tok, const CandidateList *c, int chosen)
{
    enum { SHOWN = 8 };
    fprintf(stderr, "\n  candidates after the chain (%d):\n", c->n);
    for (int i = 0; i < c->n && i < SHOWN; i++) {
        char piece[64], label[96];
        size_t len = tokenizer_token_bytes(tok, c->data[i].id, piece, sizeof piece - 1);
        piece[len < sizeof piece - 1 ? len : sizeof piece - 1] = '\0';
        char quoted[48], piece_text[52];
        snprintf(piece_text, sizeof piece_text, "'%s'",
                 error_quote(quoted, sizeof quoted, piece, strlen(piece)));
        /* padded, so that the bars of one step line up */
        snprintf(label, sizeof label, "%c %6d %-12s", c->data[i].id == chosen ? '>' : ' ',
                 c->data[i].id, piece_text);
        chart_bar(stderr, label, c->data[i].p, 1.0, 30);
    }
}

/* The next token of sequence 0, with --show-probs's table when asked for. */
static int choose_token(Session *s, const float *logits, CandidateList *shown)
{
    if (!s->o->show_probs)
        return sampler_sample(&s->sampler, logits);
    sampler_apply(&s->sampler, logits, shown);
    int token = sampler_select(&s->sampler, shown);
    show_candidates(s->tok, shown, token);
    return token;
}

typedef struct {
    FILE *out;
    Completion *c;
    Error *err;
    int status;
} StreamTarget;

static void stream_write(void *ctx, const char *bytes, size_t n)
{
    StreamTarget *t = ctx;
    if (t->out) {
        fwrite(bytes, 1, n, t->out);
        fflush(t->out);
    }
    if (t->status == 0)
        t->status = completion_add_text(t->c, bytes, n, t->err);
}

/* Adds a chosen token to the continuation: its bytes to the stream, itself to the history.
 * Returns 1 when a stop string completed. */
static int take_token(Session *s, TextStream *stream, StreamTarget *target, int token,
                      Error *err)
{
    char piece[256];
    size_t len = tokenizer_token_bytes(s->tok, token, piece, sizeof piece);
    if (completion_add_token(target->c, token, err) != 0 || history_push(s, token, false, err) != 0)
        return -1;
    int stopped = text_stream_push(stream, piece, len < sizeof piece ? len : sizeof piece, err);
    return target->status != 0 ? -1 : stopped;
}

/* Feeds the token just taken back into the model, making room first when the context is
 * full; returns 1 when it is full and may not be shifted. */
static int feed_back(Session *s, int token, Error *err)
{
    if (infer_seq_length(&s->ctx, 0) == s->n_ctx) {
        if (!s->o->context_shift)
            return 1;
        if (context_shift(s, err) != 0)
            return -1;
    }
    return infer_decode(&s->ctx, 0, &token, 1, err);
}

int session_continue(Session *s, FILE *out, Completion *c, Error *err)
{
    memset(c, 0, sizeof *c);
    c->seed = s->seed;
    c->finish = FINISH_LENGTH;
    TextStream stream;
    StreamTarget target = {.out = out, .c = c, .err = err};
    text_stream_init(&stream, s->o->stop.items, s->o->stop.n, stream_write, &target);
    CandidateList shown = {0};
    int status = s->o->show_probs ? candidates_init(&shown, s->model->config.vocab_size, err) : 0;
    double start = timer_seconds();
    int generated = 0;
    while (status == 0 && generated < s->o->max_tokens) {
        if (s->interrupted && *s->interrupted) {
            c->finish = FINISH_INTERRUPT;
            break;
        }
        int token = choose_token(s, infer_logits(&s->ctx, 0), &shown);
        if (generated++ == 0)
            s->stats.first_token_seconds = timer_seconds() - s->prompt_start;
        if (session_token_ends_text(s, token)) {
            c->finish = FINISH_EOS;
            break;
        }
        int taken = take_token(s, &stream, &target, token, err);
        int fed = taken == 0 || taken == 1 ? feed_back(s, token, err) : -1;
        if (taken < 0 || fed < 0)
            status = -1;
        else if (taken == 1)
            c->finish = FINISH_STOP;
        else if (fed == 1)
            c->finish = FINISH_CONTEXT;
        if (taken != 0 || fed != 0)
            break;
    }
    text_stream_finish(&stream);
    text_stream_free(&stream);
    candidates_free(&shown);
    s->stats.generated_tokens += c->n_tokens;
    s->stats.generate_seconds += timer_seconds() - start;
    return status != 0 || target.status != 0 ? -1 : 0;
}

/* ---- several samples side by side ---------------------------------------------------- */

typedef struct {
    Sampler sampler;
    TextStream stream;
    StreamTarget target;
    bool done;
} SampleState;

/* Sample i's state: its own sampler (the session's history, its own seed) and stream. */
static int sample_state_init(Session *s, SampleState *st, Completion *c, uint64_t seed,
                             Error *err)
{
    memset(c, 0, sizeof *c);
    c->seed = seed;
    c->finish = FINISH_LENGTH;
    SamplerParams params = s->params;
    params.seed = seed;
    if (sampler_init(&st->sampler, &params, s->model->config.vocab_size, err) != 0)
        return -1;
    for (int i = 0; i < s->n_history; i++)
        if (sampler_accept(&st->sampler, s->history[i].token, s->history[i].is_prompt, err) != 0)
            return -1;
    st->target = (StreamTarget){.c = c, .err = err};
    text_stream_init(&st->stream, s->o->stop.items, s->o->stop.n, stream_write, &st->target);
    return 0;
}

/* One step of a sample: chooses its token from logits and streams it; returns 1 when the
 * sample is over (EOS, a stop string), 0 to go on, -1 on error. */
static int sample_step(Session *s, SampleState *st, Completion *c, const float *logits,
                       int *token, Error *err)
{
    *token = sampler_sample(&st->sampler, logits);
    if (session_token_ends_text(s, *token)) {
        c->finish = FINISH_EOS;
        return 1;
    }
    char piece[256];
    size_t len = tokenizer_token_bytes(s->tok, *token, piece, sizeof piece);
    if (completion_add_token(c, *token, err) != 0 ||
        sampler_accept(&st->sampler, *token, false, err) != 0)
        return -1;
    int stopped = text_stream_push(&st->stream, piece, len < sizeof piece ? len : sizeof piece,
                                   err);
    if (stopped < 0 || st->target.status != 0)
        return -1;
    if (stopped)
        c->finish = FINISH_STOP;
    return stopped;
}

/* Every sample's step; the ones that go on are listed in seqs/tokens (their cache slots
 * and next tokens), and rows[i] is where sample i's logits will be. */
static int samples_step(Session *s, SampleState *states, Completion *out, int n, int step,
                        int *seqs, int *tokens, int *rows, int *batch, Error *err)
{
    *batch = 0;
    for (int i = 0; i < n; i++) {
        if (states[i].done)
            continue;
        const float *logits = infer_logits(&s->ctx, step == 0 ? 0 : rows[i]);
        int token, r = sample_step(s, &states[i], &out[i], logits, &token, err);
        if (r < 0)
            return -1;
        states[i].done = r == 1;
        if (r == 0) {
            seqs[*batch] = i;
            tokens[*batch] = token;
            rows[i] = (*batch)++;
        }
    }
    return 0;
}

int session_sample_many(Session *s, int n, Completion *out, Error *err)
{
    SampleState *states = calloc((size_t)n, sizeof *states);
    int *seqs = malloc((size_t)n * sizeof *seqs), *tokens = malloc((size_t)n * sizeof *tokens);
    int *rows = malloc((size_t)n * sizeof *rows);
    int status = states && seqs && tokens && rows ? 0 : error_set(err, "out of memory");
    for (int i = 1; status == 0 && i < n; i++) /* the prompt's cache, into every slot */
        infer_seq_copy(&s->ctx, 0, i, 0);
    for (int i = 0; status == 0 && i < n; i++)
        status = sample_state_init(s, &states[i], &out[i], s->seed + (uint64_t)i, err);
    double start = timer_seconds();
    for (int step = 0; status == 0 && step < s->o->max_tokens; step++) {
        int batch;
        status = samples_step(s, states, out, n, step, seqs, tokens, rows, &batch, err);
        if (status != 0 || batch == 0 || step + 1 == s->o->max_tokens)
            break;
        if (infer_seq_length(&s->ctx, seqs[0]) == s->n_ctx) {
            for (int b = 0; b < batch; b++)
                out[seqs[b]].finish = FINISH_CONTEXT;
            break;
        }
        status = infer_decode_step(&s->ctx, seqs, tokens, batch, err);
    }
    for (int i = 0; states && i < n; i++) {
        text_stream_finish(&states[i].stream);
        text_stream_free(&states[i].stream);
        sampler_free(&states[i].sampler);
        s->stats.generated_tokens += out[i].n_tokens;
    }
    s->stats.generate_seconds += timer_seconds() - start;
    free(states);
    free(seqs);
    free(tokens);
    free(rows);
    return status;
}

/* tokens per second, 0 for no time */
static double rate(int tokens, double seconds)
{
    return seconds > 0 ? tokens / seconds : 0.0;
}

void session_report(const Session *s)
{
    const SessionStats *t = &s->stats;
    const GenerateOptions *o = s->o;
    size_t cache_bytes = infer_cache_bytes(&s->ctx);
    if (t->search_steps > 0) {
        /* beam search does not sample: the chain's filters, temperature and seed play no
         * part (beam.h) */
        fprintf(stderr, "[beam search: %d beams, length penalty %g, each scored by its "
                        "log-probability after logit-bias, bad-words and penalties]\n",
                o->beam_size, o->length_penalty);
        fprintf(stderr, "[KV cache %zu bytes = %.2f MB (%s, %d positions per beam)]\n",
                cache_bytes, cache_bytes / 1e6, o->cache_type, s->n_ctx);
    } else {
        char chain[512];
        sampler_chain_describe(&s->params, chain, sizeof chain);
        fprintf(stderr, "[chain: %s]\n", chain);
        fprintf(stderr, "[seed %llu; KV cache %zu bytes = %.2f MB (%s, %d positions)]\n",
                (unsigned long long)s->seed, cache_bytes, cache_bytes / 1e6, o->cache_type,
                s->n_ctx);
    }
    fprintf(stderr, "[prompt: %d token%s in %.3f s, %.1f tokens/s", t->prompt_tokens,
            plural_s(t->prompt_tokens), t->prompt_seconds,
            rate(t->prompt_tokens, t->prompt_seconds));
    if (t->search_steps == 0) /* beams have no first token: the best is known at the end */
        fprintf(stderr, "; first token after %.3f s", t->first_token_seconds);
    fputs("]\n", stderr);
    if (t->search_steps > 0)
        fprintf(stderr, "[search: %d step%s, %d token%s through the model (the beams side by "
                        "side) in %.3f s, %.1f tokens/s]\n",
                t->search_steps, plural_s(t->search_steps), t->generated_tokens,
                plural_s(t->generated_tokens), t->generate_seconds,
                rate(t->generated_tokens, t->generate_seconds));
    else
        fprintf(stderr, "[generated: %d token%s in %.3f s, %.1f tokens/s]\n",
                t->generated_tokens, plural_s(t->generated_tokens), t->generate_seconds,
                rate(t->generated_tokens, t->generate_seconds));
}
