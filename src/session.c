#include "session.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "loader.h"
#include "stream.h"
#include "timer.h"

const char *finish_reason_name(FinishReason r)
{
    static const char *const names[] = {"length", "eos", "stop", "context", "cancelled"};
    return names[r];
}

void session_params_default(SessionParams *p)
{
    *p = (SessionParams){.n_seq = 1, .n_ctx = 512, .cache_type = GGML_TYPE_F32,
                         .max_tokens = 256};
    sampler_params_default(&p->sampler);
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
    if (buffer_reserve_items(&c->tokens, &c->cap_tokens, (size_t)c->n_tokens + 1,
                             sizeof *c->tokens, 64, "generated tokens", err) != 0)
        return -1;
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
    if (buffer_reserve_items(&s->history, &s->cap_history, (size_t)s->n_history + 1,
                             sizeof *s->history, 256, "the session's history", err) != 0)
        return -1;
    s->history[s->n_history++] = (SamplerToken){token, is_prompt};
    return sampler_accept(s->sampler, token, is_prompt, err);
}

int session_sampler_init(const Session *s, const SamplerParams *params, Sampler *out,
                         Error *err)
{
    if (sampler_init(out, params, s->model->config.vocab_size, err) != 0)
        return -1;
    if (s->sampler && sampler_grammar_share(out, s->sampler, err) != 0) {
        sampler_free(out);
        return -1;
    }
    for (int i = 0; i < s->n_history; i++)
        if (sampler_accept(out, s->history[i].token, s->history[i].is_prompt, err) != 0) {
            sampler_free(out);
            return -1;
        }
    return 0;
}

/* ---- the session --------------------------------------------------------------------------- */

int session_init(Session *s, const Model *m, const Tokenizer *tok, const SessionParams *p,
                 Error *err)
{
    memset(s, 0, sizeof *s);
    s->model = m;
    s->tok = tok;
    InferParams infer = {.n_seq = p->n_seq, .n_ctx = p->n_ctx, .cache_type = p->cache_type};
    if (infer_init(&s->own_ctx, m, &infer, err) != 0)
        return -1;
    s->ctx = &s->own_ctx;
    s->sampler = &s->own_sampler;
    s->params = *p;
    if (session_update(s, p, err) != 0) {
        session_free(s);
        return -1;
    }
    return 0;
}

int session_borrow(Session *s, const Model *m, const Tokenizer *tok, InferContext *ctx,
                   int seq, Sampler *sampler, const SessionParams *p, Error *err)
{
    memset(s, 0, sizeof *s);
    if (seq < 0 || seq >= ctx->params.n_seq)
        return error_set(err, "no sequence %d (the context has %d)", seq, ctx->params.n_seq);
    *s = (Session){.model = m, .tok = tok, .params = *p, .ctx = ctx, .seq = seq,
                   .sampler = sampler};
    s->params.n_seq = ctx->params.n_seq;
    s->params.n_ctx = ctx->params.n_ctx;
    s->params.cache_type = ctx->params.cache_type;
    s->params.sampler = sampler->params;
    return 0;
}

void session_free(Session *s)
{
    infer_free(&s->own_ctx);
    sampler_free(&s->own_sampler);
    free(s->history);
    free(s->guided_logits);
    memset(s, 0, sizeof *s);
}

int session_update(Session *s, const SessionParams *p, Error *err)
{
    Sampler sampler;
    if (session_sampler_init(s, &p->sampler, &sampler, err) != 0)
        return -1;
    sampler_free(s->sampler);
    *s->sampler = sampler;
    SessionParams kept = s->params; /* the cache's shape */
    s->params = *p;
    s->params.n_seq = kept.n_seq;
    s->params.n_ctx = kept.n_ctx;
    s->params.cache_type = kept.cache_type;
    s->params.sampler = sampler.params; /* its lists are the sampler's copies */
    return 0;
}

void session_reset(Session *s)
{
    infer_seq_clear(s->ctx, s->seq);
    if (s->guided)
        infer_seq_clear(s->ctx, s->guide_seq);
    sampler_reset(s->sampler);
    s->n_history = 0;
}

/* Whether n more tokens fit in sequence seq; an error that names them when not. */
static int feed_room(const Session *s, int seq, int n, Error *err)
{
    int used = infer_seq_length(s->ctx, seq);
    if (used + n > s->params.n_ctx)
        return error_set(err, "the prompt has %d token%s and %d are in the context already; "
                              "the context holds %d (give a larger --context)",
                         n, plural_s(n), used, s->params.n_ctx);
    return 0;
}

/* After a feed has run: its tokens into the history as prompt, its time into the stats
 * (n_decoded: the rows that went through the model, both sides' with guidance). */
static int feed_done(Session *s, const int *tokens, int n, int n_decoded, Error *err)
{
    for (int i = 0; i < n; i++)
        if (history_push(s, tokens[i], true, err) != 0)
            return -1;
    s->stats.prompt_tokens += n_decoded;
    s->stats.prompt_seconds += timer_seconds() - s->prompt_start;
    return 0;
}

int session_feed(Session *s, const int *tokens, int n, Error *err)
{
    if (n == 0)
        return 0;
    if (feed_room(s, s->seq, n, err) != 0)
        return -1;
    s->prompt_start = timer_seconds();
    if (infer_decode(s->ctx, s->seq, tokens, n, err) != 0)
        return -1;
    return feed_done(s, tokens, n, n, err);
}

/* ---- classifier-free guidance ------------------------------------------------------------ */

void guidance_mix(const float *cond, const float *uncond, float scale, float *out, int n)
{
    float keep = 1.0f - scale; /* exact at scale 0 and 1 */
    for (int i = 0; i < n; i++)
        out[i] = keep * uncond[i] + scale * cond[i];
}

int session_guide(Session *s, int uncond_seq, float scale, Error *err)
{
    if (uncond_seq < 0 || uncond_seq >= s->params.n_seq || uncond_seq == s->seq)
        return error_set(err, "guidance needs a second sequence: %d is %s (the context has "
                              "%d)", uncond_seq,
                         uncond_seq == s->seq ? "the conditional one" : "not one of them",
                         s->params.n_seq);
    float *row = realloc(s->guided_logits,
                         (size_t)s->model->config.vocab_size * sizeof *row);
    if (!row)
        return error_set(err, "out of memory");
    s->guided_logits = row;
    s->guided = true;
    s->guide_seq = uncond_seq;
    s->guide_scale = scale;
    return 0;
}

/* Batch rows for `side`'s n tokens, after what its sequence holds; the logits of the last. */
static void batch_rows(const Session *s, int side, const int *tokens, int n, int *token,
                       int *pos, int *seq, bool *logits)
{
    int start = infer_seq_length(s->ctx, side);
    for (int i = 0; i < n; i++) {
        token[i] = tokens[i];
        pos[i] = start + i;
        seq[i] = side;
        logits[i] = i == n - 1;
    }
}

int session_feed_guided(Session *s, const int *cond, int n_cond, const int *uncond,
                        int n_uncond, Error *err)
{
    if (n_cond <= 0 || n_uncond <= 0)
        return error_set(err, "guidance: the %s side has no tokens to decode (give a prompt)",
                         n_cond <= 0 ? "conditional" : "unconditional");
    if (feed_room(s, s->seq, n_cond, err) != 0 || feed_room(s, s->guide_seq, n_uncond, err) != 0)
        return -1;
    size_t n = (size_t)n_cond + (size_t)n_uncond;
    int *rows = malloc(3 * n * sizeof *rows); /* token, pos, seq */
    bool *logits = malloc(n * sizeof *logits);
    int status = rows && logits ? 0 : error_set(err, "out of memory");
    if (status == 0) {
        int *token = rows, *pos = rows + n, *seq = rows + 2 * n;
        batch_rows(s, s->seq, cond, n_cond, token, pos, seq, logits);
        batch_rows(s, s->guide_seq, uncond, n_uncond, token + n_cond, pos + n_cond,
                   seq + n_cond, logits + n_cond);
        s->prompt_start = timer_seconds();
        InferBatch b = {token, pos, seq, logits, (int)n};
        status = infer_decode_batch(s->ctx, &b, err);
    }
    free(rows);
    free(logits);
    return status == 0 ? feed_done(s, cond, n_cond, (int)n, err) : -1;
}

/* When the cache is full: the first n_keep positions stay, the older half of the rest is
 * forgotten, and what follows moves down, its keys rotated to their new positions
 * (llama.cpp's context shift), so nothing runs through the model again. */
static int context_shift(Session *s, Error *err)
{
    int n_ctx = s->params.n_ctx;
    int keep = s->params.n_keep > 0 && s->params.n_keep < n_ctx ? s->params.n_keep : 0;
    int discard = (n_ctx - keep) / 2 > 0 ? (n_ctx - keep) / 2 : 1;
    return infer_seq_truncate(s->ctx, s->seq, keep, keep + discard, err);
}

bool session_token_ends_text(const Session *s, int token)
{
    const Tokenizer *tok = s->tok;
    bool end = token == tok->eos_id || (tok->eot_id >= 0 && token == tok->eot_id);
    return end && !s->params.ignore_eos;
}

/* The next token, recording the trace when asked for, or its log-probability when given a
 * list to apply the chain into (the draw then walks the sorted list: the same token as
 * sampler_sample for the same RNG state). */
static int choose_token(Session *s, const float *logits, SamplerTrace *trace,
                        CandidateList *list, float *logprob)
{
    *logprob = NAN;
    if (trace)
        return sampler_sample_traced(s->sampler, logits, trace);
    if (!list)
        return sampler_sample(s->sampler, logits);
    sampler_apply(s->sampler, logits, list);
    int token = sampler_select(s->sampler, list);
    for (int i = 0; i < list->n; i++)
        if (list->data[i].id == token)
            *logprob = logf(list->data[i].p);
    return token;
}

/* Where a stream's decided bytes go: the completion's text. */
typedef struct {
    Completion *c;
    Error *err;
    int status;
} StreamTarget;

static void stream_write(void *ctx, const char *bytes, size_t n)
{
    StreamTarget *t = ctx;
    if (t->status == 0)
        t->status = completion_add_text(t->c, bytes, n, t->err);
}

/* Tells the caller of a token and of the text decided since the last call. */
static void announce(SessionCallback *on_token, void *ctx, SessionToken *t, const Completion *c,
                     size_t *announced)
{
    if (!on_token)
        return;
    t->text = c->text ? c->text + *announced : "";
    t->n_text = c->len - *announced;
    *announced = c->len;
    on_token(ctx, t);
}

/* The bytes of one token at most (longer ones are cut). */
enum { TOKEN_PIECE_MAX = 256 };

/* Adds a chosen token to the continuation: its bytes (into piece, for the event) to the
 * stream, itself to the history. Returns 1 when a stop string completed. */
static int take_token(Session *s, TextStream *stream, StreamTarget *target, int token,
                      char piece[static TOKEN_PIECE_MAX], SessionToken *event, Error *err)
{
    size_t len = tokenizer_token_bytes(s->tok, token, piece, TOKEN_PIECE_MAX);
    event->piece = piece;
    event->n_piece = len < TOKEN_PIECE_MAX ? len : TOKEN_PIECE_MAX;
    if (completion_add_token(target->c, token, err) != 0 || history_push(s, token, false, err) != 0)
        return -1;
    int stopped = text_stream_push(stream, piece, event->n_piece, err);
    return target->status != 0 ? -1 : stopped;
}

/* With guidance: the token into both sides in one pass; returns 1 when either is full
 * (guidance does not shift the context: quill_generate refuses the two together). */
static int feed_back_guided(Session *s, int token, Error *err)
{
    int seqs[2] = {s->seq, s->guide_seq}, tokens[2] = {token, token};
    for (int i = 0; i < 2; i++)
        if (infer_seq_length(s->ctx, seqs[i]) == s->params.n_ctx)
            return 1;
    return infer_decode_step(s->ctx, seqs, tokens, 2, err);
}

/* Feeds the token just taken back into the model, making room first when the context is
 * full; returns 1 when it is full and may not be shifted. */
static int feed_back(Session *s, int token, Error *err)
{
    if (s->guided)
        return feed_back_guided(s, token, err);
    if (infer_seq_length(s->ctx, s->seq) == s->params.n_ctx) {
        if (!s->params.context_shift)
            return 1;
        if (context_shift(s, err) != 0)
            return -1;
    }
    return infer_decode(s->ctx, s->seq, &token, 1, err);
}

/* The row the sampler reads: the last decode's first, or with guidance the two sides'
 * rows (the conditional side's first) mixed. */
static const float *next_logits(Session *s)
{
    const float *cond = infer_logits(s->ctx, 0);
    if (!s->guided)
        return cond;
    guidance_mix(cond, infer_logits(s->ctx, 1), s->guide_scale, s->guided_logits,
                 s->model->config.vocab_size);
    return s->guided_logits;
}

/* Whether the cancel flag is set. */
static bool session_cancelled(const Session *s)
{
    return s->cancel && atomic_load(s->cancel);
}

int session_continue(Session *s, SessionCallback *on_token, void *ctx, Completion *c,
                     Error *err)
{
    memset(c, 0, sizeof *c);
    c->seed = s->params.sampler.seed;
    c->finish = FINISH_LENGTH;
    TextStream stream;
    StreamTarget target = {.c = c, .err = err};
    text_stream_init(&stream, s->params.stops, s->params.n_stops, stream_write, &target);
    SamplerTrace trace;
    CandidateList list = {0};
    char piece[TOKEN_PIECE_MAX];
    size_t announced = 0;
    int status = 0;
    if (s->params.logprobs && candidates_init(&list, s->model->config.vocab_size, err) != 0)
        status = -1;
    double start = timer_seconds();
    int generated = 0;
    while (status == 0 && generated < s->params.max_tokens) {
        if (session_cancelled(s)) {
            c->finish = FINISH_CANCELLED;
            break;
        }
        float logprob;
        int token = choose_token(s, next_logits(s), s->params.trace ? &trace : NULL,
                                 s->params.logprobs ? &list : NULL, &logprob);
        if (generated++ == 0)
            s->stats.first_token_seconds = timer_seconds() - s->prompt_start;
        SessionToken event = {.token = token, .trace = s->params.trace ? &trace : NULL,
                              .logprob = logprob};
        if (session_token_ends_text(s, token)) {
            c->finish = FINISH_EOS;
            announce(on_token, ctx, &event, c, &announced);
            break;
        }
        int taken = take_token(s, &stream, &target, token, piece, &event, err);
        if (taken >= 0) /* shown before the model runs it: the text appears without delay */
            announce(on_token, ctx, &event, c, &announced);
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
    candidates_free(&list);
    if (c->len > announced)
        announce(on_token, ctx, &(SessionToken){.token = -1, .logprob = NAN}, c, &announced);
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
    SamplerParams params = s->params.sampler;
    params.seed = seed;
    if (session_sampler_init(s, &params, &st->sampler, err) != 0)
        return -1;
    st->target = (StreamTarget){.c = c, .err = err};
    text_stream_init(&st->stream, s->params.stops, s->params.n_stops, stream_write, &st->target);
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
    char piece[TOKEN_PIECE_MAX];
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
        const float *logits = infer_logits(s->ctx, step == 0 ? 0 : rows[i]);
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
        infer_seq_copy(s->ctx, 0, i, 0);
    for (int i = 0; status == 0 && i < n; i++)
        status = sample_state_init(s, &states[i], &out[i],
                                   s->params.sampler.seed + (uint64_t)i, err);
    double start = timer_seconds();
    for (int step = 0; status == 0 && step < s->params.max_tokens; step++) {
        int batch;
        status = samples_step(s, states, out, n, step, seqs, tokens, rows, &batch, err);
        if (status != 0 || batch == 0 || step + 1 == s->params.max_tokens)
            break;
        if (infer_seq_length(s->ctx, seqs[0]) == s->params.n_ctx) {
            for (int b = 0; b < batch; b++)
                out[seqs[b]].finish = FINISH_CONTEXT;
            break;
        }
        status = infer_decode_step(s->ctx, seqs, tokens, batch, err);
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
